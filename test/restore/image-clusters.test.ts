import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { imageClusters } from '../../src/restore/image-clusters';

describe('imageClusters', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vz-imgclusters-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function collect(images: { path: string; size: number }[], sizeCheck: 'exact' | 'pad') {
    const out: { devId: number; cluster: number; data: Buffer }[] = [];
    // copy each cluster: the generator reuses its buffers
    for await (const c of imageClusters(images, { sizeCheck })) out.push({ devId: c.devId, cluster: c.cluster, data: Buffer.from(c.data) });
    return out;
  }

  it('cuts images larger than one read into clusters, across the read-ahead buffer switch', async () => {
    const a = randomBytes(9 * (1 << 20) + 12345);
    const b = randomBytes(70000);
    fs.writeFileSync(path.join(dir, 'a'), a);
    fs.writeFileSync(path.join(dir, 'b'), b);
    const got = await collect([{ path: path.join(dir, 'a'), size: a.length }, { path: path.join(dir, 'b'), size: b.length }], 'exact');
    const aClusters = got.filter((c) => c.devId === 1);
    expect(aClusters.map((c) => c.cluster)).toEqual([...Array(Math.ceil(a.length / 65536)).keys()]);
    expect(Buffer.concat(aClusters.map((c) => c.data)).equals(a)).toBe(true);
    expect(Buffer.concat(got.filter((c) => c.devId === 2).map((c) => c.data)).equals(b)).toBe(true);
  });

  it('does not read a chunk whose clusters are known to be zero, and reads every other one', async () => {
    // 3 chunks of 4 MiB and a partial fourth; the second and the last are "known zero" although
    // the file holds data there: what comes out for them shows they were not read
    const size = 3 * (4 << 20) + 3 * 65536 + 100;
    const img = randomBytes(size);
    fs.writeFileSync(path.join(dir, 'z'), img);
    const asked: [number, number][] = [];
    const knownZero = async (first: number, count: number) => {
      asked.push([first, count]);
      return first === 64 || first === 192;
    };
    const out: Buffer[] = [];
    for await (const c of imageClusters([{ path: path.join(dir, 'z'), size, knownZero }], { sizeCheck: 'exact' })) out.push(Buffer.from(c.data));
    expect(asked).toEqual([
      [0, 64],
      [64, 64],
      [128, 64],
      [192, 4],
    ]);
    const want = Buffer.from(img);
    want.fill(0, 4 << 20, 8 << 20);
    want.fill(0, 12 << 20);
    expect(out.length).toBe(196);
    expect(out[195]!.length).toBe(100);
    expect(Buffer.concat(out).equals(want)).toBe(true);
  });

  it("pads a short file with zeros in 'pad' mode and refuses it in 'exact' mode", async () => {
    const f = path.join(dir, 'short');
    fs.writeFileSync(f, Buffer.alloc(5000, 7));
    const padded = await collect([{ path: f, size: 5120 }], 'pad');
    expect(padded).toHaveLength(1);
    expect(padded[0]!.data.length).toBe(5120);
    expect(padded[0]!.data.subarray(5000).equals(Buffer.alloc(120))).toBe(true);
    await expect(collect([{ path: f, size: 5120 }], 'exact')).rejects.toMatchObject({ code: 'VZ_ERR_INTEGRITY' });
  });

  it('names a missing image in its error', async () => {
    await expect(collect([{ path: path.join(dir, 'nope'), size: 4096 }], 'exact')).rejects.toThrow(/nope/);
  });

  it('stops cleanly when the consumer stops early', async () => {
    const f = path.join(dir, 'big');
    fs.writeFileSync(f, randomBytes(12 << 20));
    const gen = imageClusters([{ path: f, size: 12 << 20 }], { sizeCheck: 'exact' });
    const first = await gen.next();
    expect(first.done).toBe(false);
    await gen.return(undefined);
    expect((await gen.next()).done).toBe(true);
  });
});
