/**
 * A per-disk file of cluster digests: entry i is the digest (src/store/cluster-digest.ts) of the
 * disk's 64 KiB cluster i (bytes past the disk end count as zeros). It lives beside the raw image in the guest dataset,
 * so every snapshot carries the digests of exactly its own data.
 *
 * Owns paging: entries are read and written through a small LRU of fixed pages, so memory stays
 * bounded whatever the disk size (a 1 TiB disk has a 512 MiB digest file). Missing entries (a new
 * file, or a file shorter than the disk) read as the digest of an all-zero cluster, which is what a
 * freshly grown sparse image holds. Synchronous positional I/O: callers run it between awaits.
 * Leaves the meaning of a mismatch to the caller (ingest treats a match as "unchanged", verify as
 * "intact").
 */
import * as fs from 'node:fs';
import { IoError } from '../errors';
import { preadFullSync, pwriteAllSync } from '../util/io';
import { DIGEST_SIZE, type DigestAlgorithm, zeroClusterDigest } from '../store/cluster-digest';
const ENTRIES_PER_PAGE = 8192; // 256 KiB page, covers 512 MiB of disk
const PAGE_BYTES = ENTRIES_PER_PAGE * DIGEST_SIZE;
const MAX_PAGES = 32; // 8 MiB of digests in memory at most

interface Page {
  data: Buffer;
  dirty: boolean;
}

export class DigestFile {
  private readonly fd: number;
  private readonly pages = new Map<number, Page>();
  private closed = false;
  /** the digest of an all-zero cluster: what entries past the file's end hold */
  private readonly zero: Buffer;

  /** Opens (creating if needed) the digest file of a disk with `clusters` clusters and sets its length. */
  constructor(
    readonly path: string,
    readonly clusters: number,
    readonly algorithm: DigestAlgorithm,
  ) {
    this.zero = zeroClusterDigest(algorithm);
    try {
      this.fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
      const st = fs.fstatSync(this.fd);
      const want = clusters * DIGEST_SIZE;
      if (st.size > want) fs.ftruncateSync(this.fd, want);
      // whole entries only (a torn last entry is rewritten)
      this.fileLength = Math.min(st.size - (st.size % DIGEST_SIZE), want);
    } catch (e) {
      throw new IoError(`cannot open digest file '${path}': ${(e as Error).message}`, path, { cause: e });
    }
  }

  /** bytes of the file that hold real entries; entries past it are implicit zero-cluster digests */
  private fileLength: number;

  private page(index: number): Page {
    let p = this.pages.get(index);
    if (p) {
      // refresh LRU position
      this.pages.delete(index);
      this.pages.set(index, p);
      return p;
    }
    const data = Buffer.allocUnsafe(PAGE_BYTES);
    const start = index * PAGE_BYTES;
    let got = 0;
    if (start < this.fileLength) {
      const want = Math.min(PAGE_BYTES, this.fileLength - start);
      try {
        got = preadFullSync(this.fd, data, 0, want, start);
      } catch (e) {
        throw this.ioError('read', start, e);
      }
    }
    for (let off = got - (got % DIGEST_SIZE); off < PAGE_BYTES; off += DIGEST_SIZE) this.zero.copy(data, off);
    p = { data, dirty: false };
    this.pages.set(index, p);
    if (this.pages.size > MAX_PAGES) this.evictOldest();
    return p;
  }

  private evictOldest(): void {
    const [idx, p] = this.pages.entries().next().value as [number, Page];
    if (p.dirty) this.writePage(idx, p);
    this.pages.delete(idx);
  }

  private writePage(index: number, p: Page): void {
    const start = index * PAGE_BYTES;
    // pages between the file's end and this one were never loaded: give them their implicit
    // zero-cluster digests first, or the file would have a hole that reads as zero bytes
    if (start > this.fileLength) this.fillZeroDigests(this.fileLength, start);
    const len = Math.min(PAGE_BYTES, this.clusters * DIGEST_SIZE - start);
    this.writeAt(p.data, len, start);
    this.fileLength = Math.max(this.fileLength, start + len);
    p.dirty = false;
  }

  /** Writes zero-cluster digests over [from, to) of the file (both entry-aligned). */
  private fillZeroDigests(from: number, to: number): void {
    const chunk = Buffer.alloc(Math.min(PAGE_BYTES, to - from));
    for (let off = 0; off < chunk.length; off += DIGEST_SIZE) this.zero.copy(chunk, off);
    let pos = from;
    while (pos < to) {
      const n = Math.min(chunk.length, to - pos);
      this.writeAt(chunk, n, pos);
      pos += n;
    }
  }

  private writeAt(data: Buffer, len: number, pos: number): void {
    try {
      pwriteAllSync(this.fd, data, 0, len, pos);
    } catch (e) {
      throw this.ioError('write', pos, e);
    }
  }

  private ioError(op: 'read' | 'write', pos: number, e: unknown): IoError {
    return new IoError(`cannot ${op} digest file '${this.path}' at offset ${pos}: ${(e as Error).message}`, this.path, { cause: e });
  }

  private check(cluster: number): void {
    if (this.closed) throw new Error(`internal error: digest file '${this.path}' used after close`);
    if (!Number.isInteger(cluster) || cluster < 0 || cluster >= this.clusters) {
      throw new Error(`internal error: cluster ${cluster} outside digest file '${this.path}' (${this.clusters} clusters)`);
    }
  }

  /** True when the stored digest of `cluster` equals `digest`. */
  matches(cluster: number, digest: Buffer): boolean {
    this.check(cluster);
    const p = this.page(Math.floor(cluster / ENTRIES_PER_PAGE));
    const off = (cluster % ENTRIES_PER_PAGE) * DIGEST_SIZE;
    return p.data.compare(digest, 0, DIGEST_SIZE, off, off + DIGEST_SIZE) === 0;
  }

  /** A copy of the stored digest of `cluster`. */
  get(cluster: number): Buffer {
    this.check(cluster);
    const p = this.page(Math.floor(cluster / ENTRIES_PER_PAGE));
    const off = (cluster % ENTRIES_PER_PAGE) * DIGEST_SIZE;
    return Buffer.from(p.data.subarray(off, off + DIGEST_SIZE));
  }

  set(cluster: number, digest: Buffer): void {
    this.check(cluster);
    const p = this.page(Math.floor(cluster / ENTRIES_PER_PAGE));
    const off = (cluster % ENTRIES_PER_PAGE) * DIGEST_SIZE;
    digest.copy(p.data, off, 0, DIGEST_SIZE);
    p.dirty = true;
  }

  /** Writes dirty pages, pads the file to its full length and closes it. */
  close(): void {
    if (this.closed) return;
    try {
      for (const [idx, p] of this.pages) if (p.dirty) this.writePage(idx, p);
      this.pages.clear();
      // materialise implicit zero-digest entries so the file always has one entry per cluster
      const want = this.clusters * DIGEST_SIZE;
      if (this.fileLength < want) {
        this.fillZeroDigests(this.fileLength, want);
        this.fileLength = want;
      }
    } finally {
      this.closed = true;
      fs.closeSync(this.fd);
    }
  }

  /** Closes without writing anything further (after a failure; the dataset is rolled back anyway). */
  discard(): void {
    if (this.closed) return;
    this.closed = true;
    this.pages.clear();
    fs.closeSync(this.fd);
  }
}
