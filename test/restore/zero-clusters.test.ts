import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { hashCluster, loadClusterDigests, zeroClusterDigest } from '../../src/store/cluster-digest';
import { ZeroClusters } from '../../src/restore/zero-clusters';

describe('ZeroClusters', () => {
  let dir: string;
  beforeAll(async () => {
    await loadClusterDigests();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vz-zeroclusters-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** a digest file of `n` clusters, non-zero where `data(i)` says, in `alg` */
  function digestFile(name: string, n: number, data: (i: number) => boolean, alg: 'blake3' | 'sha256' = 'blake3'): string {
    const p = path.join(dir, name);
    const entries = [...Array(n).keys()].map((i) => (data(i) ? hashCluster(alg, randomBytes(65536)) : zeroClusterDigest(alg)));
    fs.writeFileSync(p, Buffer.concat(entries));
    return p;
  }

  it('tells runs of all-zero clusters from the digest file, across its read batches', async () => {
    const n = 3000; // more than one batch of 1024 entries
    const z = new ZeroClusters(digestFile('a.b3', n, (i) => i === 5 || i === 2047), 'blake3', n);
    try {
      expect(await z.allZero(0, 5)).toBe(true);
      expect(await z.allZero(0, 6)).toBe(false);
      expect(await z.allZero(6, 2000)).toBe(true); // 6..2005, across the batch boundary
      expect(await z.allZero(2000, 64)).toBe(false); // holds 2047
      expect(await z.allZero(2048, 952)).toBe(true);
      expect(await z.allZero(1000, 10)).toBe(true); // back into an earlier batch
    } finally {
      await z.close();
    }
  });

  it('reads layout-1.0 SHA-256 digest files with their own zero digest', async () => {
    const z = new ZeroClusters(digestFile('a.sha256', 10, (i) => i === 9, 'sha256'), 'sha256', 10);
    expect(await z.allZero(0, 9)).toBe(true);
    expect(await z.allZero(0, 10)).toBe(false);
    await z.close();
  });

  it('knows nothing, without failing, when the digest file is missing or has the wrong length', async () => {
    const missing = new ZeroClusters(path.join(dir, 'none.b3'), 'blake3', 4);
    expect(await missing.allZero(0, 4)).toBe(false);
    await missing.close();
    const short = new ZeroClusters(digestFile('short.b3', 3, () => false), 'blake3', 4);
    expect(await short.allZero(0, 3)).toBe(false);
    await short.close();
  });
});
