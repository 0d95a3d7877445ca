/**
 * Brings one raw disk image in a guest dataset up to date with the clusters of a new backup,
 * writing only what differs.
 *
 * For each incoming cluster it first compares the cluster's digest (BLAKE3, see
 * src/store/cluster-digest.ts) with the one recorded at the last ingest (digest-file.ts): equal
 * means unchanged, and the old image is not read at all. What a mismatch costs depends on the
 * image's record size (its ZFS block size, see DiskSyncOptions), the unit ZFS rewrites:
 * - below 64 KiB (16K, 32K) the old cluster is read and compared block by block, and only the
 *   differing 4 KiB blocks are written (adjacent ones with one positional write), so only the
 *   records that really changed are rewritten;
 * - at 64 KiB and above a record holds whole clusters, and ZFS rewrites the whole record whatever
 *   part of it is written: the changed cluster is written whole, without reading the old one. The
 *   snapshot delta has the same size (measured: docs/design.md), and the read of the old
 *   cluster (a random read per changed cluster, on a disk pool a seek) is saved; at exactly 64 KiB
 *   ZFS need not read the old record either, as the write covers it.
 * A cluster known to be zero before (a hole) is never read: its non-zero blocks are written. An
 * image without recorded digests is always read and compared. Bytes past the disk end count as
 * zeros everywhere.
 *
 * Owns the image file `disk-<name>.raw` (sparse, exactly the disk size) and its digest file. Does
 * not decide what a failure means: the caller rolls the dataset back.
 *
 * Hashing runs on the caller's thread; the reads and writes of changed clusters run on libuv's
 * thread pool, at most MAX_IN_FLIGHT clusters at a time, so the pool's latency overlaps hashing
 * and decompression. The caller keeps to that bound with `ready()` and ends with `close()`,
 * which waits for every write; the first I/O error is thrown by the next `ready()`/`close()`.
 * Memory: at most MAX_IN_FLIGHT clusters of new and old data, whatever the disk size. A changed
 * cluster is copied into a buffer of this class before its I/O starts, so `apply` keeps nothing of
 * the record it was given (the VMA reader's transient mode may reuse it); an unchanged cluster is
 * hashed where it lies, or expanded into one scratch buffer, and costs no allocation.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IoError } from '../errors';
import { preadFull, pwriteAll } from '../util/io';
import type { VmaCluster } from '../vma/types';
import { expandCluster } from '../vma/reader';
import { DIGEST_ALGORITHM, type DigestAlgorithm, digestFileName, hashCluster, zeroClusterDigest } from '../store/cluster-digest';
import { BLOCK_SIZE as BLOCK, BLOCKS_PER_CLUSTER, CLUSTER_SIZE, ZERO_BLOCK, ZERO_CLUSTER } from '../vma/constants';
import { clusterCount } from '../vma/names';
import { DigestFile } from './digest-file';

/**
 * changed clusters being read/compared/written at once (16 MiB of data at most). Measured on a
 * day-3 ingest of an 8 GiB disk (2250 changed clusters, zfs-fuse, 2 cores): with 32 the reader
 * waited 0.42-0.61 s on a full queue in bursts of changes, with 128 at most 0.02 s.
 */
const MAX_IN_FLIGHT = 128;

export interface DiskSyncStats {
  clusters: number;
  /** clusters whose digest matched: the old image was not read */
  unchanged: number;
  /** clusters whose old content was read and compared */
  compared: number;
  /** changed clusters written whole without reading the old content (records of 64 KiB or more) */
  rewritten: number;
  /** clusters into which anything was written: those whose content changed */
  clustersWritten: number;
  /**
   * 4 KiB blocks written: those that differed, plus, in clusters written whole, their unchanged
   * blocks (a partial last block counts as one)
   */
  blocksWritten: number;
  bytesRead: number;
  bytesWritten: number;
}

export interface DiskSyncOptions {
  /**
   * Size in bytes of the image's records, the unit its file system rewrites: at 64 KiB and above
   * changed clusters are written whole, below that their differing blocks are found by reading
   * the old cluster. Default: the existing image's st_blksize, which ZFS reports as the file's
   * own block size (the dataset's recordsize when the file was created: a later
   * `zfs set recordsize` does not change it, so the dataset's value could mislead); other file
   * systems report their page-sized I/O unit, so images there are compared.
   */
  recordSize?: number;
}

export function diskImageName(devName: string): string {
  return `disk-${devName}.raw`;
}

/** True for a file name diskImageName gives. */
export function isDiskImageName(name: string): boolean {
  return /^disk-.+\.raw$/.test(name);
}

export class DiskSync {
  readonly stats: DiskSyncStats = { clusters: 0, unchanged: 0, compared: 0, rewritten: 0, clustersWritten: 0, blocksWritten: 0, bytesRead: 0, bytesWritten: 0 };
  readonly imagePath: string;
  /** what new ingests write: a disk's digests are always rewritten in it */
  readonly algorithm: DigestAlgorithm = DIGEST_ALGORITHM;
  /** the digest file this sync writes, beside the image */
  readonly digestPath: string;
  private readonly fd: number;
  private readonly digests: DigestFile;
  private readonly zeroDigest: Buffer;
  /** false when an image exists without digests: every cluster is then read and compared */
  private readonly trustDigests: boolean;
  /** a changed cluster is written whole, unread (recordsize >= 64 KiB and digests trusted) */
  private readonly wholeClusters: boolean;
  private readonly lastCluster: number;
  private readonly tailBytes: number;
  /** cluster buffers not in use: each in-flight cluster holds one for its new data and one for the old */
  private readonly spare: Buffer[] = [];
  /** where a partly stored cluster is expanded to be hashed; handed over whole when that cluster changed */
  private scratch: Buffer = Buffer.allocUnsafe(CLUSTER_SIZE);
  private inFlight = 0;
  private failure: unknown;
  private wake: (() => void) | undefined;
  private closed = false;

  constructor(
    dir: string,
    readonly devName: string,
    readonly size: number,
    opts: DiskSyncOptions = {},
  ) {
    this.zeroDigest = zeroClusterDigest(this.algorithm);
    this.imagePath = path.join(dir, diskImageName(devName));
    const digestPath = (this.digestPath = path.join(dir, digestFileName(devName, this.algorithm)));
    const clusters = clusterCount(size);
    this.lastCluster = clusters - 1;
    this.tailBytes = size % CLUSTER_SIZE;
    let imageHadData = false;
    let digestsExisted = false;
    try {
      imageHadData = fs.statSync(this.imagePath).size > 0;
    } catch {
      /* new image */
    }
    try {
      digestsExisted = fs.statSync(digestPath).isFile();
    } catch {
      /* new digest file */
    }
    this.trustDigests = digestsExisted || !imageHadData;
    let recordSize: number;
    try {
      this.fd = fs.openSync(this.imagePath, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
      // the block size of the records already there (taken before a resize could change it)
      recordSize = opts.recordSize ?? fs.fstatSync(this.fd).blksize;
      fs.ftruncateSync(this.fd, size);
    } catch (e) {
      throw new IoError(`cannot open disk image '${this.imagePath}': ${(e as Error).message}`, this.imagePath, { cause: e });
    }
    // a new image (all its clusters known zero) is never read, whatever its record size
    this.wholeClusters = this.trustDigests && recordSize >= CLUSTER_SIZE;
    try {
      this.digests = new DigestFile(digestPath, clusters, this.algorithm);
    } catch (e) {
      fs.closeSync(this.fd);
      throw e;
    }
  }

  /** True while MAX_IN_FLIGHT clusters are being written: await `ready()` before the next apply. */
  get busy(): boolean {
    return this.inFlight >= MAX_IN_FLIGHT;
  }

  /**
   * Applies one cluster of the new backup: hashes it here, and when it changed copies it and
   * starts its read-compare-write on the thread pool. Keeps no reference to `c` after returning.
   * The cluster is expanded at most once; of the device's partial last cluster only the bytes
   * before the disk end are hashed (as if zero-padded), compared and written, whatever the archive
   * carried past the end.
   */
  apply(c: VmaCluster): void {
    if (this.failure) throw this.failure;
    this.stats.clusters++;
    const base = c.cluster * CLUSTER_SIZE;
    const limit = c.cluster === this.lastCluster && this.tailBytes !== 0 ? this.tailBytes : CLUSTER_SIZE;
    // an all-zero cluster is only read from, so the shared zero buffer serves; a full one is c.blocks itself
    const full = c.mask === 0 ? ZERO_CLUSTER : expandCluster(c, this.scratch);
    const digest = c.mask === 0 ? this.zeroDigest : hashCluster(this.algorithm, full.subarray(0, limit));
    if (this.trustDigests && this.digests.matches(c.cluster, digest)) {
      this.stats.unchanged++;
      return;
    }
    const oldKnownZero = this.trustDigests && this.digests.matches(c.cluster, this.zeroDigest);
    this.digests.set(c.cluster, digest);
    // the I/O's own copy of the new data; ZERO_CLUSTER is shared and only ever read, never put in spare
    let data: Buffer = ZERO_CLUSTER;
    if (full === this.scratch) {
      // expanded into our scratch already: that buffer goes with the I/O, and a spare becomes the scratch
      data = this.scratch;
      this.scratch = this.spare.pop() ?? Buffer.allocUnsafe(CLUSTER_SIZE);
    } else if (c.mask !== 0) {
      // a view of the reader's input, valid only until the next record
      data = this.spare.pop() ?? Buffer.allocUnsafe(CLUSTER_SIZE);
      full.copy(data, 0, 0, limit);
    }
    this.inFlight++;
    this.syncCluster(data, base, limit, oldKnownZero)
      .catch((e: unknown) => {
        this.failure ??= e;
      })
      .finally(() => {
        if (data !== ZERO_CLUSTER) this.spare.push(data);
        this.settled();
      });
  }

  private settled(): void {
    this.inFlight--;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** Resolves once fewer than MAX_IN_FLIGHT clusters are in flight; throws the first I/O error. */
  async ready(): Promise<void> {
    while (this.inFlight >= MAX_IN_FLIGHT && !this.failure) await new Promise<void>((r) => (this.wake = r));
    if (this.failure) throw this.failure;
  }

  /** Waits for every in-flight cluster (errors are kept in `failure`). */
  private async drain(): Promise<void> {
    while (this.inFlight > 0) await new Promise<void>((r) => (this.wake = r));
  }

  /**
   * Writes a changed cluster: whole when records hold whole clusters, else the runs of blocks that
   * differ from the old bytes (read unless known to be zero).
   */
  private async syncCluster(full: Buffer, base: number, limit: number, oldKnownZero: boolean): Promise<void> {
    if (this.wholeClusters && !oldKnownZero) {
      await this.writeRun(full, base, 0, Math.ceil(limit / BLOCK), limit);
      this.stats.rewritten++;
      this.stats.clustersWritten++;
      return;
    }
    let old: Buffer | undefined;
    let wrote = false;
    try {
      if (!oldKnownZero) {
        old = this.spare.pop() ?? Buffer.allocUnsafe(CLUSTER_SIZE);
        await this.readOld(old, base, limit);
        this.stats.compared++;
      }
      let runStart = -1;
      for (let j = 0; j <= BLOCKS_PER_CLUSTER; j++) {
        let differs = false;
        if (j < BLOCKS_PER_CLUSTER && j * BLOCK < limit) {
          const lo = j * BLOCK;
          const hi = Math.min(lo + BLOCK, limit);
          differs = old ? full.compare(old, lo, hi, lo, hi) !== 0 : !full.subarray(lo, hi).equals(ZERO_BLOCK.subarray(0, hi - lo));
        }
        if (differs) {
          if (runStart < 0) runStart = j;
        } else if (runStart >= 0) {
          await this.writeRun(full, base, runStart, j, limit);
          runStart = -1;
          wrote = true;
        }
      }
      if (wrote) this.stats.clustersWritten++;
    } finally {
      if (old) this.spare.push(old);
    }
  }

  private async readOld(buf: Buffer, base: number, limit: number): Promise<void> {
    let got: number;
    try {
      got = await preadFull(this.fd, buf, 0, limit, base);
    } catch (e) {
      throw new IoError(`cannot read '${this.imagePath}' at offset ${base}: ${(e as Error).message}`, this.imagePath, { cause: e });
    }
    buf.fill(0, got);
    this.stats.bytesRead += got;
  }

  private async writeRun(data: Buffer, base: number, from: number, to: number, limit: number): Promise<void> {
    const lo = from * BLOCK;
    const hi = Math.min(to * BLOCK, limit);
    try {
      await pwriteAll(this.fd, data, lo, hi - lo, base + lo);
    } catch (e) {
      throw new IoError(`cannot write '${this.imagePath}' at offset ${base + lo}: ${(e as Error).message}`, this.imagePath, { cause: e });
    }
    this.stats.blocksWritten += to - from;
    this.stats.bytesWritten += hi - lo;
  }

  /** Waits for every write, flushes digests and closes both files; throws the first I/O error. */
  async close(): Promise<DiskSyncStats> {
    await this.drain();
    if (this.failure) {
      this.closeFiles(false);
      throw this.failure;
    }
    this.closeFiles(true);
    return this.stats;
  }

  /** After a failure: waits for in-flight I/O (so no write lands after the fd is closed), then closes without writing more. */
  async discard(): Promise<void> {
    await this.drain();
    try {
      this.closeFiles(false);
    } catch {
      // after a failure the caller rolls the dataset back; a close that fails too changes nothing,
      // and throwing here would skip that rollback
    }
  }

  private closeFiles(keepDigests: boolean): void {
    if (this.closed) return;
    this.closed = true;
    try {
      if (keepDigests) this.digests.close();
      else this.digests.discard();
    } finally {
      fs.closeSync(this.fd);
    }
  }
}
