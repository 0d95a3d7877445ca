/**
 * Rebuilds a standard VMA archive from one backup snapshot and streams it out:
 * snapshot files -> VMA writer -> compressor -> file or stdout.
 *
 * Owns reading a backup's files through the manifest (configs checked against their recorded
 * SHA-256, disks read sequentially in 1 MiB steps) and the output side (a new file created
 * exclusively and removed again on failure, or stdout). Leaves the read-only view of the snapshot
 * to the store (openSnapshot/release: a clone or .zfs/snapshot, nothing copied), the format to
 * src/vma and compression to src/archive. The archive carries the original uuid and ctime, the
 * same configs, device names, sizes and bytes; output starts at once and memory is bounded.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { IntegrityError, IoError } from '../errors';
import { compress } from '../archive/compression';
import type { Compression } from '../archive/names';
import { writeVma } from '../vma/writer';
import type { VmaConfig } from '../vma/types';
import type { BackupStore } from '../store/store';
import { type Manifest, readManifest } from '../store/manifest';
import { imageClusters } from './image-clusters';

const READ_SIZE = 1 << 20;

export interface RestoreRequest {
  vmid: number;
  timestamp: string;
  /** file path, or '-' for stdout */
  output: string;
  compression: Compression;
  /** zstd/pigz threads */
  threads?: number;
  signal?: AbortSignal;
}

export interface RestoreResult {
  bytes: number;
  seconds: number;
  manifest: Manifest;
}

/** Reads the backup's configs and checks each against its SHA-256 in the manifest. */
export function readConfigs(dir: string, m: Manifest, what: string): VmaConfig[] {
  return m.configs.map((c) => {
    const p = path.join(dir, c.name);
    let data: Buffer;
    try {
      data = fs.readFileSync(p);
    } catch (e) {
      throw new IoError(`backup ${what}: cannot read config '${c.name}': ${(e as Error).message}`, p, { cause: e });
    }
    const sum = createHash('sha256').update(data).digest('hex');
    if (sum !== c.sha256) throw new IntegrityError(`backup ${what}: config '${c.name}' does not match its recorded SHA-256`, p);
    return { name: c.name, data };
  });
}

/** The rebuilt archive as a stream of Buffers (uncompressed VMA, or compressed as asked). */
export function vmaFromSnapshotDir(dir: string, m: Manifest, what: string, compression: Compression, opts: { threads?: number; signal?: AbortSignal } = {}): AsyncIterable<Buffer> {
  const configs = readConfigs(dir, m, what);
  // dev ids of the rebuilt archive follow the original dev_id order
  const sorted = [...m.disks].sort((a, b) => a.id - b.id);
  const vma = writeVma(
    {
      uuid: Buffer.from(m.source.uuid, 'hex'),
      ctime: m.source.vmaCtime,
      configs,
      devices: sorted.map((d) => ({ name: d.name, size: d.size })),
    },
    imageClusters(
      sorted.map((d) => ({ path: path.join(dir, d.image), size: d.size })),
      { sizeCheck: 'exact', signal: opts.signal },
    ),
  );
  return compression === 'none' ? vma : compress(vma, compression, { threads: opts.threads, signal: opts.signal, label: what });
}

export async function restoreBackup(store: BackupStore, req: RestoreRequest): Promise<RestoreResult> {
  const what = `${req.vmid}/${req.timestamp}`;
  const t0 = process.hrtime.bigint();
  // resolves the backup (NotFoundError) before any output file exists
  const view = await store.openSnapshot(req.vmid, req.timestamp);
  let bytes = 0;
  let created = false;
  try {
    const m = readManifest(view.dir, what);
    const source = vmaFromSnapshotDir(view.dir, m, what, req.compression, req);
    async function* counted(): AsyncGenerator<Buffer> {
      for await (const b of source) {
        bytes += b.length;
        yield b;
      }
    }
    let sink: Writable;
    if (req.output === '-') {
      sink = process.stdout;
    } else {
      try {
        const fd = fs.openSync(req.output, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o640);
        created = true;
        sink = fs.createWriteStream('', { fd, highWaterMark: READ_SIZE });
      } catch (e) {
        throw new IoError(`cannot create '${req.output}': ${(e as Error).message}`, req.output, { cause: e });
      }
    }
    await pipeline(Readable.from(counted(), { objectMode: false }), sink, { end: req.output !== '-', signal: req.signal });
    return { bytes, seconds: Number(process.hrtime.bigint() - t0) / 1e9, manifest: m };
  } catch (e) {
    if (created) fs.rmSync(req.output, { force: true });
    throw e;
  } finally {
    await view.release();
  }
}
