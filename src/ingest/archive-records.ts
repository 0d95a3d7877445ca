/**
 * The VMA records of a vzdump archive file, for a consumer that keeps no record's blocks once it
 * asks for the next one (DiskSync, `vma verify`, `vma extract`, which copies what it queues).
 *
 * Owns the pairing that makes that cheap: a plain `.vma` (or the decompressor's output) is read
 * into a ChunkPool, the reader runs in transient mode and hands every chunk back to the same pool.
 * Leaves decompression to openArchive and every format check to readVma. A consumer that keeps
 * views of blocks must call readVma(openArchive(...)) without these options instead.
 */
import { ChunkPool } from '../archive/chunk-pool';
import { openArchive } from '../archive/compression';
import { readVma, type ReadVmaOptions } from '../vma/reader';
import type { VmaRecord } from '../vma/types';

export interface ArchiveRecordsOptions {
  /** the archive's name in error messages, unquoted (default: the path as given) */
  label?: string;
  signal?: AbortSignal;
  /** as ReadVmaOptions.checkComplete (default true) */
  checkComplete?: boolean;
}

/** Reads `file` (`.vma`, `.vma.zst`, `.vma.lzo`, `.vma.gz`) record by record; blocks are valid until the next record is asked for. */
export function readArchiveRecords(file: string, opts: ArchiveRecordsOptions = {}): AsyncGenerator<VmaRecord> {
  const pool = new ChunkPool();
  const label = opts.label ?? file;
  const readerOpts: ReadVmaOptions = {
    label: `'${label}'`,
    checkComplete: opts.checkComplete,
    transient: true,
    release: (chunk) => pool.release(chunk),
  };
  return readVma(openArchive(file, { label, signal: opts.signal, chunkPool: pool }), readerOpts);
}
