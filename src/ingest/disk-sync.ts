/**
 * Brings one raw disk image in a guest dataset up to date with the clusters of a new backup,
 * writing only the 4 KiB blocks that differ.
 *
 * For each incoming cluster it first compares the cluster's SHA-256 with the digest recorded at the
 * last ingest (digest-file.ts): equal means unchanged, and the old image is not read at all. Only
 * on a mismatch is the old cluster read and compared block by block; adjacent differing blocks are
 * written with one positional write. Bytes past the disk end count as zeros everywhere.
 *
 * Owns the image file `disk-<name>.raw` (sparse, exactly the disk size) and its digest file. Does
 * not decide what a failure means: the caller rolls the dataset back. Synchronous positional I/O
 * per cluster, so memory is one cluster whatever the disk size.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IoError } from '../errors';
import type { VmaCluster } from '../vma/types';
import { expandCluster } from '../vma/reader';
import { CLUSTER_SIZE, DigestFile, ZERO_BLOCK, ZERO_CLUSTER_DIGEST, clusterDigest } from './digest-file';

const BLOCK = 4096;
const BLOCKS_PER_CLUSTER = 16;

export interface DiskSyncStats {
  clusters: number;
  /** clusters whose digest matched: the old image was not read */
  unchanged: number;
  /** clusters whose old content was read and compared */
  compared: number;
  /** 4 KiB blocks written because they differed */
  blocksWritten: number;
  bytesRead: number;
  bytesWritten: number;
}

export function diskImageName(devName: string): string {
  return `disk-${devName}.raw`;
}

export function digestFileName(devName: string): string {
  return `disk-${devName}.sha256`;
}

export class DiskSync {
  readonly stats: DiskSyncStats = { clusters: 0, unchanged: 0, compared: 0, blocksWritten: 0, bytesRead: 0, bytesWritten: 0 };
  readonly imagePath: string;
  private readonly fd: number;
  private readonly digests: DigestFile;
  /** false when an image exists without digests: every cluster is then read and compared */
  private readonly trustDigests: boolean;
  private readonly lastCluster: number;
  private readonly tailBytes: number;
  private readonly oldBuf = Buffer.alloc(CLUSTER_SIZE);

  constructor(
    dir: string,
    readonly devName: string,
    readonly size: number,
  ) {
    this.imagePath = path.join(dir, diskImageName(devName));
    const digestPath = path.join(dir, digestFileName(devName));
    const clusters = Math.ceil(size / CLUSTER_SIZE);
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
    try {
      this.fd = fs.openSync(this.imagePath, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
      fs.ftruncateSync(this.fd, size);
    } catch (e) {
      throw new IoError(`cannot open disk image '${this.imagePath}': ${(e as Error).message}`, this.imagePath, { cause: e });
    }
    try {
      this.digests = new DigestFile(digestPath, clusters);
    } catch (e) {
      fs.closeSync(this.fd);
      throw e;
    }
  }

  /**
   * Applies one cluster of the new backup. `digest` may be given when the caller computed it
   * already (clusterDigestAsync); the device's partial last cluster is always hashed here, with
   * the bytes past the disk end zeroed.
   */
  apply(c: VmaCluster, precomputed?: Buffer): void {
    this.stats.clusters++;
    const base = c.cluster * CLUSTER_SIZE;
    const partial = c.cluster === this.lastCluster && this.tailBytes !== 0;
    let full: Buffer | undefined;
    let digest: Buffer;
    if (partial) {
      // bytes past the disk end count as zeros, whatever the archive carried there
      full = Buffer.alloc(CLUSTER_SIZE);
      expandCluster(c).copy(full, 0, 0, this.tailBytes);
      digest = createHash('sha256').update(full).digest();
    } else {
      digest = precomputed ?? clusterDigest(c);
    }
    if (this.trustDigests && this.digests.matches(c.cluster, digest)) {
      this.stats.unchanged++;
      return;
    }
    full ??= expandCluster(c);
    const oldKnownZero = this.trustDigests && this.digests.matches(c.cluster, ZERO_CLUSTER_DIGEST);
    const limit = partial ? this.tailBytes : CLUSTER_SIZE;
    if (!oldKnownZero) {
      this.readOld(base, limit);
      this.stats.compared++;
    }
    let runStart = -1;
    for (let j = 0; j <= BLOCKS_PER_CLUSTER; j++) {
      let differs = false;
      if (j < BLOCKS_PER_CLUSTER && j * BLOCK < limit) {
        const lo = j * BLOCK;
        const hi = lo + BLOCK;
        differs = oldKnownZero ? !full.subarray(lo, hi).equals(ZERO_BLOCK) : full.compare(this.oldBuf, lo, hi, lo, hi) !== 0;
      }
      if (differs) {
        if (runStart < 0) runStart = j;
      } else if (runStart >= 0) {
        this.writeRun(full, base, runStart, j, limit);
        runStart = -1;
      }
    }
    this.digests.set(c.cluster, digest);
  }

  private readOld(base: number, limit: number): void {
    let got = 0;
    try {
      while (got < limit) {
        const n = fs.readSync(this.fd, this.oldBuf, got, limit - got, base + got);
        if (n === 0) break;
        got += n;
      }
    } catch (e) {
      throw new IoError(`cannot read '${this.imagePath}' at offset ${base + got}: ${(e as Error).message}`, this.imagePath, { cause: e });
    }
    this.oldBuf.fill(0, got);
    this.stats.bytesRead += got;
  }

  private writeRun(data: Buffer, base: number, from: number, to: number, limit: number): void {
    const lo = from * BLOCK;
    const hi = Math.min(to * BLOCK, limit);
    let done = 0;
    try {
      while (lo + done < hi) done += fs.writeSync(this.fd, data, lo + done, hi - lo - done, base + lo + done);
    } catch (e) {
      throw new IoError(`cannot write '${this.imagePath}' at offset ${base + lo + done}: ${(e as Error).message}`, this.imagePath, { cause: e });
    }
    this.stats.blocksWritten += to - from;
    this.stats.bytesWritten += hi - lo;
  }

  /** Flushes digests and closes both files. */
  close(): DiskSyncStats {
    try {
      this.digests.close();
    } finally {
      fs.closeSync(this.fd);
    }
    return this.stats;
  }

  /** Closes both files after a failure, writing nothing more. */
  discard(): void {
    this.digests.discard();
    try {
      fs.closeSync(this.fd);
    } catch {
      /* already closed */
    }
  }
}
