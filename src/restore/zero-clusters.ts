/**
 * Which clusters of a stored disk image are all zero, told by the backup's digest file instead of
 * the image: restore then skips reading the 4 MiB chunks of the image whose clusters all are (a
 * thin guest disk is mostly such chunks, and reading them is reading zeros through the pool).
 *
 * Trusts the digest file as ingest does: ingest leaves a cluster unwritten when its digest
 * matches, so the image is only right if the digests are, and the two are snapshotted together.
 * It is an optimisation only: a digest file that cannot be opened or read, or has the wrong
 * length, means "not known" (restore reads the image), never an error; `verify` is what checks
 * the file. The file is read through ./digest-entries.ts.
 */
import { type DigestAlgorithm, loadClusterDigests, zeroClusterDigest } from '../store/cluster-digest';
import { DigestEntries } from './digest-entries';

export class ZeroClusters {
  private opened: Promise<DigestEntries | undefined> | undefined;
  private zero: Buffer | undefined;
  private broken = false;

  constructor(
    readonly digestPath: string,
    readonly algorithm: DigestAlgorithm,
    /** clusters of the disk: the file must hold exactly this many entries */
    readonly clusters: number,
  ) {}

  /** Whether clusters `first` .. `first + count - 1` are all recorded as all-zero; false when unsure. */
  async allZero(first: number, count: number): Promise<boolean> {
    const entries = await (this.opened ??= this.open());
    if (!entries || this.broken) return false;
    try {
      for (let i = first; i < first + count; i++) if (!(await entries.get(i)).equals(this.zero!)) return false;
    } catch {
      this.broken = true;
      return false;
    }
    return true;
  }

  /** Closes the digest file (after an open still under way); idempotent. */
  async close(): Promise<void> {
    const entries = await this.opened;
    this.broken = true;
    await entries?.close().catch(() => undefined);
  }

  private async open(): Promise<DigestEntries | undefined> {
    try {
      await loadClusterDigests();
      this.zero = zeroClusterDigest(this.algorithm);
      return await DigestEntries.open(this.digestPath, this.clusters);
    } catch {
      return undefined;
    }
  }
}
