/**
 * Rebuilds a standard VMA archive from one backup snapshot and streams it out:
 * snapshot files -> VMA writer -> compressor -> file or stdout.
 *
 * Owns reading a backup's files through the manifest (configs checked against their recorded
 * SHA-256, disks read sequentially in 4 MiB steps, skipping the steps that the digest file
 * records as all zero) and the output side: stdout, or a file that
 * appears under its name only when complete and synced (written as `FILE.partial-PID` beside it,
 * as vzdump writes to a temporary name first, then linked into place, never over an existing
 * file), so a PVE dump directory never lists a cut archive; the partial file goes on any failure
 * or stop. Leaves the read-only view of the snapshot
 * to the store (openSnapshot/release: a clone or .zfs/snapshot, nothing copied), the format to
 * src/vma and compression to src/archive. The archive carries the original uuid and ctime, the
 * same configs, device names, sizes and bytes; output starts at once and memory is bounded.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ConflictError, IntegrityError, IoError, VzError, stoppedError } from '../errors';
import { compress } from '../archive/compression';
import type { Compression } from '../archive/names';
import { writeVma } from '../vma/writer';
import type { VmaClusterData, VmaConfig } from '../vma/types';
import { clusterCount } from '../vma/names';
import type { BackupStore } from '../store/store';
import { type Manifest, type ManifestDisk, readManifest } from '../store/manifest';
import { imageClusters } from './image-clusters';
import { ZeroClusters } from './zero-clusters';

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

/**
 * The clusters of a backup's disk images, in dev_id order; chunks whose clusters the digest file
 * records as all zero are not read (./zero-clusters.ts).
 */
async function* snapshotClusters(dir: string, disks: ManifestDisk[], signal?: AbortSignal): AsyncGenerator<VmaClusterData> {
  const zeros = disks.map((d) => new ZeroClusters(path.join(dir, d.digests), d.digestAlgorithm, clusterCount(d.size)));
  try {
    yield* imageClusters(
      disks.map((d, i) => ({ path: path.join(dir, d.image), size: d.size, knownZero: (first: number, n: number) => zeros[i]!.allZero(first, n) })),
      { sizeCheck: 'exact', signal },
    );
  } finally {
    await Promise.all(zeros.map((z) => z.close()));
  }
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
    snapshotClusters(dir, sorted, opts.signal),
  );
  return compression === 'none' ? vma : compress(vma, compression, { threads: opts.threads, signal: opts.signal, label: what });
}

export async function restoreBackup(store: BackupStore, req: RestoreRequest): Promise<RestoreResult> {
  const what = `${req.vmid}/${req.timestamp}`;
  const t0 = process.hrtime.bigint();
  // lstat: a dangling symlink is an existing name too
  if (req.output !== '-' && fs.lstatSync(req.output, { throwIfNoEntry: false }) !== undefined) {
    throw new ConflictError(`cannot create '${req.output}': file exists - remove it or choose another name`, req.output);
  }
  // resolves the backup (NotFoundError) before any output file exists
  const view = await store.openSnapshot(req.vmid, req.timestamp);
  let bytes = 0;
  let partial: string | undefined;
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
      const tmp = `${req.output}.partial-${process.pid}`;
      try {
        const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o640);
        partial = tmp;
        sink = fs.createWriteStream('', { fd, highWaterMark: READ_SIZE });
      } catch (e) {
        throw new IoError(`cannot create '${tmp}': ${(e as Error).message}`, tmp, { cause: e });
      }
    }
    try {
      await pipeline(Readable.from(counted(), { objectMode: false }), sink, { end: req.output !== '-', signal: req.signal });
    } catch (e) {
      if (req.signal?.aborted) throw stoppedError(`restore of backup ${what}`, e);
      if ((e as NodeJS.ErrnoException).code === 'EPIPE') {
        throw new IoError(`restore of backup ${what}: the reader of the output closed it before the archive was complete`, req.output, { cause: e });
      }
      throw e;
    }
    // the partial name itself goes in `finally` (after a link it is a second name of the archive)
    if (partial !== undefined) publish(partial, req.output);
    return { bytes, seconds: Number(process.hrtime.bigint() - t0) / 1e9, manifest: m };
  } finally {
    try {
      if (partial !== undefined) fs.rmSync(partial, { force: true });
    } catch {
      // best effort: a leftover FILE.partial-PID is no archive name PVE lists
    }
    await view.release();
  }
}

/** Syncs the complete `tmp` and gives it the name `output`, which must not exist yet; `tmp` may remain as a second name. */
function publish(tmp: string, output: string): void {
  const fail = (why: string, cause?: unknown): IoError => new IoError(`cannot create '${output}': ${why}`, output, { cause });
  const exists = (): ConflictError =>
    new ConflictError(`cannot create '${output}': file exists (created while the restore ran) - the archive was not written`, output);
  try {
    const fd = fs.openSync(tmp, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    try {
      fs.linkSync(tmp, output); // atomic, and never replaces a file
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') throw exists();
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw e;
    }
    // a file system without hard links: the same check, not atomic
    if (fs.lstatSync(output, { throwIfNoEntry: false }) !== undefined) throw exists();
    fs.renameSync(tmp, output);
  } catch (e) {
    throw e instanceof VzError ? e : fail((e as Error).message, e);
  }
}
