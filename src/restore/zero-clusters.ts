/**
 * Which clusters of a stored disk image are all zero, told by the backup's digest file instead of
 * the image: restore then skips reading the 4 MiB chunks of the image whose clusters all are (a
 * thin guest disk is mostly such chunks, and reading them is reading zeros through the pool).
 *
 * Trusts the digest file as ingest does: ingest leaves a cluster unwritten when its digest
 * matches, so the image is only right if the digests are, and the two are snapshotted together.
 * Reads the file read-only and sequentially, DIGEST_BATCH entries at a time. It is an
 * optimisation only: a digest file that cannot be opened or read, or has the wrong length, means
 * "not known" (restore reads the image), never an error; `verify` is what checks the file.
 */
import * as fs from 'node:fs';
import { DIGEST_SIZE, type DigestAlgorithm, loadClusterDigests, zeroClusterDigest } from '../store/cluster-digest';

/** digest entries read at a time (32 KiB, covering 64 MiB of disk) */
const DIGEST_BATCH = 1024;

export class ZeroClusters {
  private fh: fs.promises.FileHandle | undefined;
  private opened: Promise<boolean> | undefined;
  private zero: Buffer | undefined;
  private readonly batch = Buffer.alloc(DIGEST_BATCH * DIGEST_SIZE);
  private batchStart = -1;
  private batchCount = 0;
  private broken = false;

  constructor(
    readonly digestPath: string,
    readonly algorithm: DigestAlgorithm,
    /** clusters of the disk: the file must hold exactly this many entries */
    readonly clusters: number,
  ) {}

  /** Whether clusters `first` .. `first + count - 1` are all recorded as all-zero; false when unsure. */
  async allZero(first: number, count: number): Promise<boolean> {
    if (!(await (this.opened ??= this.open())) || this.broken) return false;
    for (let i = first; i < first + count; i++) {
      if (i < this.batchStart || i >= this.batchStart + this.batchCount) {
        if (!(await this.load(i))) return false;
      }
      const at = (i - this.batchStart) * DIGEST_SIZE;
      if (!this.batch.subarray(at, at + DIGEST_SIZE).equals(this.zero!)) return false;
    }
    return true;
  }

  /** Closes the digest file (after an open still under way); idempotent. */
  async close(): Promise<void> {
    await this.opened;
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close().catch(() => undefined);
  }

  private async open(): Promise<boolean> {
    try {
      await loadClusterDigests();
      this.zero = zeroClusterDigest(this.algorithm);
      this.fh = await fs.promises.open(this.digestPath, 'r');
      return (await this.fh.stat()).size === this.clusters * DIGEST_SIZE;
    } catch {
      return false;
    }
  }

  private async load(first: number): Promise<boolean> {
    const n = Math.min(DIGEST_BATCH, this.clusters - first);
    if (n <= 0 || !this.fh) return false;
    try {
      const { bytesRead } = await this.fh.read(this.batch, 0, n * DIGEST_SIZE, first * DIGEST_SIZE);
      if (bytesRead !== n * DIGEST_SIZE) throw new Error('short read');
    } catch {
      this.broken = true;
      return false;
    }
    this.batchStart = first;
    this.batchCount = n;
    return true;
  }
}
