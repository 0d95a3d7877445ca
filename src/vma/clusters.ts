/**
 * Bookkeeping of which clusters of one device have been seen, for duplicate and completeness
 * checks in reader.ts and writer.ts (vma-format.md §3.4).
 *
 * Pure, in memory. Memory grows with the clusters actually seen (a bitmap allocated in pages of
 * 65536 clusters = 8 KiB each), so a declared 256 TiB device costs nothing until data arrives.
 */

const PAGE_BITS = 16;
const PAGE_CLUSTERS = 1 << PAGE_BITS;

export class ClusterSet {
  private readonly pages = new Map<number, Uint8Array>();
  private seen = 0;

  /** @param total cluster count of the device */
  constructor(readonly total: number) {}

  /** Number of distinct clusters added. */
  get count(): number {
    return this.seen;
  }

  /** Marks `cluster` as seen; returns false if it already was. */
  add(cluster: number): boolean {
    const pageNo = Math.floor(cluster / PAGE_CLUSTERS);
    let page = this.pages.get(pageNo);
    if (page === undefined) {
      page = new Uint8Array(PAGE_CLUSTERS / 8);
      this.pages.set(pageNo, page);
    }
    const bit = cluster - pageNo * PAGE_CLUSTERS;
    const byte = bit >>> 3;
    const m = 1 << (bit & 7);
    if (page[byte] & m) return false;
    page[byte] |= m;
    this.seen++;
    return true;
  }

  has(cluster: number): boolean {
    const pageNo = Math.floor(cluster / PAGE_CLUSTERS);
    const page = this.pages.get(pageNo);
    if (page === undefined) return false;
    const bit = cluster - pageNo * PAGE_CLUSTERS;
    return (page[bit >>> 3] & (1 << (bit & 7))) !== 0;
  }

  /** The lowest cluster in 0..total-1 not yet seen, or -1 when all were seen. */
  firstMissing(): number {
    if (this.seen >= this.total) return -1;
    for (let pageNo = 0; pageNo * PAGE_CLUSTERS < this.total; pageNo++) {
      const page = this.pages.get(pageNo);
      const base = pageNo * PAGE_CLUSTERS;
      if (page === undefined) return base;
      const end = Math.min(PAGE_CLUSTERS, this.total - base);
      for (let byte = 0; byte * 8 < end; byte++) {
        if (page[byte] === 0xff) continue;
        for (let b = 0; b < 8 && byte * 8 + b < end; b++) {
          if ((page[byte] & (1 << b)) === 0) return base + byte * 8 + b;
        }
      }
    }
    return -1;
  }
}
