/**
 * Read-only access to a stored disk's digest file (32 bytes per 64 KiB cluster, written by
 * ingest): entries are read DIGEST_BATCH at a time, so walking a disk in order costs one read per
 * 64 MiB of disk. Used by verify (every entry, in order) and restore (which steps are all zero).
 *
 * Owns the open file and its length check; what an entry means is the caller's. `onRead` sees
 * every batch as it is read, so a caller asking for the entries in order sees the whole file once,
 * in order (verify hashes it that way).
 */
import * as fs from 'node:fs';
import { IntegrityError, IoError } from '../errors';
import { DIGEST_SIZE } from '../store/cluster-digest';

/** digest entries read at a time (32 KiB, covering 64 MiB of disk) */
const DIGEST_BATCH = 1024;

export class DigestEntries {
  private readonly batch = Buffer.alloc(DIGEST_BATCH * DIGEST_SIZE);
  private batchStart = -1;
  private batchCount = 0;

  private constructor(
    private fh: fs.promises.FileHandle | undefined,
    readonly path: string,
    readonly clusters: number,
    private readonly onRead?: (bytes: Buffer) => void,
  ) {}

  /** Opens the digest file of a disk of `clusters` clusters; IntegrityError unless it holds exactly that many entries. */
  static async open(file: string, clusters: number, onRead?: (bytes: Buffer) => void): Promise<DigestEntries> {
    const fh = await fs.promises.open(file, 'r');
    try {
      const { size } = await fh.stat();
      if (size !== clusters * DIGEST_SIZE) throw new IntegrityError(`digest file '${file}' has ${size} bytes, expected ${clusters * DIGEST_SIZE}`, file);
    } catch (e) {
      await fh.close();
      throw e;
    }
    return new DigestEntries(fh, file, clusters, onRead);
  }

  /** The digest of cluster `i`; the view is valid until the next call. */
  async get(i: number): Promise<Buffer> {
    if (i < this.batchStart || i >= this.batchStart + this.batchCount) await this.load(i);
    const at = (i - this.batchStart) * DIGEST_SIZE;
    return this.batch.subarray(at, at + DIGEST_SIZE);
  }

  /** Closes the file; idempotent. */
  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
  }

  private async load(first: number): Promise<void> {
    const n = Math.min(DIGEST_BATCH, this.clusters - first);
    if (!this.fh || first < 0 || n <= 0) throw new IoError(`digest file '${this.path}': no entry ${first} (${this.clusters} clusters)`, this.path);
    const { bytesRead } = await this.fh.read(this.batch, 0, n * DIGEST_SIZE, first * DIGEST_SIZE);
    if (bytesRead !== n * DIGEST_SIZE) throw new IntegrityError(`digest file '${this.path}' ended at entry ${first + Math.floor(bytesRead / DIGEST_SIZE)} of ${this.clusters}`, this.path);
    this.batchStart = first;
    this.batchCount = n;
    this.onRead?.(this.batch.subarray(0, n * DIGEST_SIZE));
  }
}
