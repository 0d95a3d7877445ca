import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createBLAKE3 } from 'hash-wasm';
import { DiskSync, diskImageName } from '../../src/ingest/disk-sync';
import { DigestFile } from '../../src/ingest/digest-file';
import { digestFileName, loadClusterDigests, zeroClusterDigest } from '../../src/store/cluster-digest';
import type { VmaCluster } from '../../src/vma/types';

beforeAll(() => loadClusterDigests());

const C = 65536;
const B = 4096;

/** Encodes a device image as VMA does: mask of non-zero 4 KiB blocks, present blocks concatenated. */
function clustersOf(image: Buffer): VmaCluster[] {
  const out: VmaCluster[] = [];
  for (let c = 0; c * C < image.length; c++) {
    let mask = 0;
    const parts: Buffer[] = [];
    for (let j = 0; j < 16; j++) {
      const lo = c * C + j * B;
      if (lo >= image.length) break;
      const blk = Buffer.alloc(B);
      image.copy(blk, 0, lo, Math.min(lo + B, image.length));
      if (!blk.equals(Buffer.alloc(B))) {
        mask |= 1 << j;
        parts.push(blk);
      }
    }
    out.push({ devId: 1, cluster: c, mask, blocks: Buffer.concat(parts) });
  }
  return out;
}

function shuffle<T>(a: T[], seed = 7): T[] {
  let s = seed;
  for (let i = a.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const j = s % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

async function sync(dir: string, image: Buffer, name = 'drive-scsi0', recordSize?: number) {
  const s = new DiskSync(dir, name, image.length, { recordSize });
  for (const c of shuffle(clustersOf(image))) {
    s.apply(c);
    if (s.busy) await s.ready();
  }
  return s.close();
}

function makeImage(size: number): Buffer {
  const img = Buffer.alloc(size);
  // data in some blocks, zeros in others, a full cluster of data, a partial tail
  for (let off = 0; off < size; off += B) {
    if ((off / B) % 3 !== 1) randomBytes(Math.min(B, size - off)).copy(img, off);
  }
  return img;
}

describe('DiskSync', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vz-disksync-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('builds an exact sparse image on first ingest without reading the (new) image', async () => {
    const img = makeImage(5 * C + 3 * B + 512);
    const st = await sync(dir, img);
    expect(fs.readFileSync(path.join(dir, diskImageName('drive-scsi0'))).equals(img)).toBe(true);
    expect(st.bytesRead).toBe(0);
    expect(st.compared).toBe(0);
    const nonZeroBlocks = clustersOf(img).reduce((n, c) => n + c.blocks.length / B, 0);
    expect(st.blocksWritten).toBe(nonZeroBlocks);
  });

  it('writes only the blocks that changed and skips unchanged clusters by digest', async () => {
    const img = makeImage(8 * C);
    await sync(dir, img);
    const next = Buffer.from(img);
    randomBytes(B).copy(next, 2 * C + 5 * B); // one block in cluster 2
    next.fill(0, 6 * C + 2 * B, 6 * C + 4 * B); // two adjacent blocks zeroed in cluster 6
    const st = await sync(dir, next);
    expect(fs.readFileSync(path.join(dir, diskImageName('drive-scsi0'))).equals(next)).toBe(true);
    expect(st.clusters).toBe(8);
    expect(st.unchanged).toBe(6);
    expect(st.compared).toBe(2);
    // block 3 of cluster 6 was already zero in makeImage's pattern? count what really differed
    let differing = 0;
    for (let off = 0; off < img.length; off += B) if (!img.subarray(off, off + B).equals(next.subarray(off, off + B))) differing++;
    expect(st.blocksWritten).toBe(differing);
  });

  it('grows and shrinks the image to the new device size', async () => {
    const img = makeImage(3 * C + 512);
    await sync(dir, img);
    const grown = Buffer.concat([img, makeImage(2 * C)]);
    await sync(dir, grown);
    expect(fs.readFileSync(path.join(dir, diskImageName('drive-scsi0'))).equals(grown)).toBe(true);
    const shrunk = grown.subarray(0, 2 * C + 1024);
    await sync(dir, shrunk);
    expect(fs.readFileSync(path.join(dir, diskImageName('drive-scsi0'))).equals(shrunk)).toBe(true);
    expect(fs.statSync(path.join(dir, digestFileName('drive-scsi0'))).size).toBe(3 * 32);
  });

  it('ignores junk past the device end in the last block, as QEMU clips it', async () => {
    const size = 2 * C + 512;
    const img = makeImage(size);
    const cs = clustersOf(img);
    const last = cs[2]!;
    // the straddling block is stored whole; put junk in its tail
    last.blocks.fill(0xaa, 512, B);
    const s = new DiskSync(dir, 'drive-scsi0', size);
    for (const c of cs) s.apply(c);
    await s.close();
    expect(fs.readFileSync(path.join(dir, diskImageName('drive-scsi0'))).equals(img)).toBe(true);
    // a second ingest of the clean archive sees the last cluster as unchanged
    const st = await sync(dir, img);
    expect(st.unchanged).toBe(3);
  });

  it('records the BLAKE3 of each full cluster (zero-padded at the end), as an independent implementation computes it', async () => {
    const img = makeImage(C + 8192);
    await sync(dir, img);
    expect(digestFileName('drive-scsi0')).toBe('disk-drive-scsi0.b3');
    const d = new DigestFile(path.join(dir, digestFileName('drive-scsi0')), 2, 'blake3');
    const pad = Buffer.alloc(2 * C);
    img.copy(pad);
    const ref = await createBLAKE3(); // hash-wasm: a separate (WebAssembly) BLAKE3
    const b3 = (b: Buffer) => Buffer.from(ref.init().update(b).digest('binary'));
    expect(d.get(0)).toEqual(b3(pad.subarray(0, C)));
    expect(d.get(1)).toEqual(b3(pad.subarray(C)));
    expect(zeroClusterDigest('blake3')).toEqual(b3(Buffer.alloc(C)));
    d.discard();
  });

  it('reports a failed write from close() and leaves no write in flight', async () => {
    const img = makeImage(4 * C);
    const s = new DiskSync(dir, 'drive-scsi0', img.length);
    // replace the image fd with a read-only one: every pool write fails with EBADF
    const imgPath = path.join(dir, diskImageName('drive-scsi0'));
    const priv = s as unknown as { fd: number };
    fs.closeSync(priv.fd);
    priv.fd = fs.openSync(imgPath, 'r');
    for (const c of clustersOf(img)) s.apply(c);
    await expect(s.close()).rejects.toThrow(/cannot write '.*disk-drive-scsi0\.raw' at offset \d+/);
  });

  it('keeps nothing of a record after apply returns (the reader may reuse its buffers)', async () => {
    const old = makeImage(6 * C + 2 * B);
    await sync(dir, old);
    const next = makeImage(6 * C + 2 * B); // every non-zero block differs
    randomBytes(3 * C).copy(next, C); // and clusters 1-3 are stored whole (mask 0xffff)
    const s = new DiskSync(dir, 'drive-scsi0', next.length);
    for (const c of clustersOf(next)) {
      s.apply(c);
      c.blocks.fill(0xee); // what a transient reader may do before the writes land
    }
    const st = await s.close();
    expect(st.blocksWritten).toBeGreaterThan(0);
    expect(fs.readFileSync(path.join(dir, diskImageName('drive-scsi0'))).equals(next)).toBe(true);
    expect((await sync(dir, next)).unchanged).toBe(7); // the digests were taken before the scribble too
  });

  it('discard after a failure never throws, even when closing fails, so the caller can roll back', async () => {
    const s = new DiskSync(dir, 'drive-scsi0', 4 * C);
    const priv = s as unknown as { fd: number };
    fs.closeSync(priv.fd);
    priv.fd = -1; // so closing the image in discard fails (and touches no fd of anyone else)
    await expect(s.discard()).resolves.toBeUndefined();
  });

  it('does not trust a missing digest file when the image already holds data', async () => {
    const img = makeImage(4 * C);
    await sync(dir, img);
    fs.rmSync(path.join(dir, digestFileName('drive-scsi0')));
    const next = Buffer.from(img);
    randomBytes(B).copy(next, C);
    const st = await sync(dir, next);
    expect(st.compared).toBe(4);
    expect(st.blocksWritten).toBe(1);
    expect(fs.readFileSync(path.join(dir, diskImageName('drive-scsi0'))).equals(next)).toBe(true);
  });

  describe('with a recordsize of 64 KiB or more', () => {
    const R = 64 * 1024;

    it('writes a changed cluster whole without reading the old one, and the image comes out exact', async () => {
      const size = 8 * C + 3 * B + 100; // a partial last cluster with a partial last block
      const img = makeImage(size);
      const first = await sync(dir, img, 'drive-scsi0', R);
      // first ingest: every old cluster is a known hole, so only non-zero blocks are written, as before
      expect(first.rewritten).toBe(0);
      expect(first.blocksWritten).toBe(clustersOf(img).reduce((n, c) => n + c.blocks.length / B, 0));
      const next = Buffer.from(img);
      randomBytes(B).copy(next, 2 * C + 5 * B); // one block in cluster 2
      next.fill(0, 6 * C, 7 * C); // cluster 6 now all zero
      randomBytes(50).copy(next, 8 * C + 3 * B); // the partial last block of the last cluster
      // the image opened write-only: a read of the old content would fail with EBADF
      const s = new DiskSync(dir, 'drive-scsi0', size, { recordSize: R });
      const priv = s as unknown as { fd: number };
      fs.closeSync(priv.fd);
      priv.fd = fs.openSync(path.join(dir, diskImageName('drive-scsi0')), fs.constants.O_WRONLY);
      for (const c of shuffle(clustersOf(next))) {
        s.apply(c);
        if (s.busy) await s.ready();
      }
      const st = await s.close();
      expect(fs.readFileSync(path.join(dir, diskImageName('drive-scsi0'))).equals(next)).toBe(true);
      expect(st).toMatchObject({ clusters: 9, unchanged: 6, compared: 0, rewritten: 3, clustersWritten: 3, bytesRead: 0 });
      // clusters 2 and 6 whole (16 blocks each), the last one up to the disk end (3 blocks + a partial one)
      expect(st.blocksWritten).toBe(16 + 16 + 4);
      expect(st.bytesWritten).toBe(2 * C + 3 * B + 100);
      expect((await sync(dir, next, 'drive-scsi0', R)).unchanged).toBe(9);
    });

    it('still compares block by block below 64 KiB, and where no digests were recorded', async () => {
      const img = makeImage(4 * C);
      await sync(dir, img, 'drive-scsi0', R);
      const next = Buffer.from(img);
      randomBytes(B).copy(next, C);
      const small = await sync(dir, next, 'drive-scsi0', 16 * 1024);
      expect(small).toMatchObject({ compared: 1, rewritten: 0, clustersWritten: 1, blocksWritten: 1 });
      fs.rmSync(path.join(dir, digestFileName('drive-scsi0')));
      const again = Buffer.from(next);
      randomBytes(B).copy(again, 3 * C);
      const untrusted = await sync(dir, again, 'drive-scsi0', R);
      expect(untrusted).toMatchObject({ compared: 4, rewritten: 0, clustersWritten: 1, blocksWritten: 1 });
      expect(fs.readFileSync(path.join(dir, diskImageName('drive-scsi0'))).equals(again)).toBe(true);
    });
  });
});

describe('DigestFile', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vz-digest-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('pages through a file larger than its cache and persists every entry', () => {
    const n = 8192 * 40 + 17; // more pages than the LRU holds
    const p = path.join(dir, 'd');
    const d = new DigestFile(p, n, 'sha256');
    const val = (i: number) => createHash('sha256').update(String(i)).digest();
    for (let i = 0; i < n; i += 97) d.set(i, val(i));
    d.close();
    expect(fs.statSync(p).size).toBe(n * 32);
    const r = new DigestFile(p, n, 'sha256');
    for (let i = 0; i < n; i++) {
      if (i % 97 === 0) expect(r.matches(i, val(i))).toBe(true);
      else if (i % 1001 === 0) expect(r.get(i)).toEqual(zeroClusterDigest('sha256'));
    }
    r.discard();
  });

  it('gives pages it never loaded their zero-cluster digests, also between written pages', () => {
    const n = 8192 * 12; // 12 pages of 8192 entries
    const p = path.join(dir, 'd');
    const d = new DigestFile(p, n, 'blake3');
    const val = createHash('sha256').update('x').digest();
    d.set(8192 * 11 + 5, val); // only the last page is touched: pages 0-10 are never loaded
    d.close();
    const raw = fs.readFileSync(p);
    expect(raw.length).toBe(n * 32);
    const zero = zeroClusterDigest('blake3');
    for (let i = 0; i < n; i++) {
      const e = raw.subarray(i * 32, i * 32 + 32);
      if (i === 8192 * 11 + 5) expect(e).toEqual(val);
      else if (!e.equals(zero)) throw new Error(`entry ${i} is not the zero-cluster digest`);
    }
  });

  it('names the digest file and the offset when a write fails (ENOSPC from /dev/full)', () => {
    const d = new DigestFile('/dev/full', 4, 'blake3');
    d.set(1, createHash('sha256').update('x').digest());
    expect(() => d.close()).toThrow(/^cannot write digest file '\/dev\/full' at offset 0: ENOSPC/);
  });

  it('rejects cluster numbers outside the disk', () => {
    const d = new DigestFile(path.join(dir, 'd'), 4, 'blake3');
    expect(() => d.get(4)).toThrow(/outside/);
    d.discard();
  });
});
