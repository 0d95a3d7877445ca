import { VmaFormatError } from '../../src/errors';
import { decodeExtentHeader } from '../../src/vma/extent';
import { decodeHeader } from '../../src/vma/header';
import { writeVma, type WriteVmaOptions } from '../../src/vma/writer';
import type { VmaClusterData } from '../../src/vma/types';
import {
  BL,
  CL,
  clustersOf,
  errorOf,
  feed,
  makeImage,
  popcount,
  prng,
  readAll,
  rebuildImages,
  shuffle,
  UUID,
  writeArchive,
} from './helpers/vma-gen';

const conf = { name: 'qemu-server.conf', data: Buffer.from('memory: 512\n') };

/** Walks an archive with the pure decoders: every extent's header and size. */
function walk(archive: Buffer): { headerSize: number; extents: { offset: number; blockCount: number; entries: { devId: number; cluster: number; mask: number }[] }[] } {
  const h = decodeHeader(archive);
  const extents = [];
  let pos = h.headerSize;
  while (pos < archive.length) {
    const e = decodeExtentHeader(archive.subarray(pos, pos + 512), h.uuid, pos);
    extents.push({ offset: pos, blockCount: e.blockCount, entries: e.entries.filter((x) => x.devId !== 0) });
    pos += 512 + e.blockCount * BL;
  }
  expect(pos).toBe(archive.length); // nothing after the last extent
  return { headerSize: h.headerSize, extents };
}

describe('writeVma output structure', () => {
  test('header first, then extents of at most 58 clusters; one entry per cluster incl. zero ones', async () => {
    const rnd = prng(1);
    const img = makeImage(130 * CL + 5 * BL + 512, rnd); // 131 clusters, last one partial
    const { archive, parts } = await writeArchive(
      { uuid: UUID, ctime: 42, configs: [conf], devices: [{ name: 'drive-scsi0', size: img.length }] },
      clustersOf(1, img),
    );
    const { headerSize, extents } = walk(archive);
    expect(parts[0].length).toBe(headerSize);
    expect(headerSize % 512).toBe(0);
    expect(extents.map((e) => e.entries.length)).toEqual([58, 58, 15]);
    expect(parts.slice(1).map((p) => p.length)).toEqual(extents.map((e) => 512 + e.blockCount * BL));
    const listed = extents.flatMap((e) => e.entries.map((x) => x.cluster));
    expect(listed).toEqual(Array.from({ length: 131 }, (_, i) => i));
    // masks: a bit per non-zero 4 KiB block, nothing else
    for (const e of extents) {
      for (const x of e.entries) {
        let expected = 0;
        for (let j = 0; j < 16; j++) {
          const start = x.cluster * CL + j * BL;
          if (start >= img.length) break;
          if (img.subarray(start, Math.min(img.length, start + BL)).some((v) => v !== 0)) expected |= 1 << j;
        }
        expect(x.mask).toBe(expected);
      }
      expect(e.blockCount).toBe(e.entries.reduce((n, x) => n + popcount(x.mask), 0));
    }
    expect(extents.some((e) => e.entries.some((x) => x.mask === 0))).toBe(true);
    expect(extents.some((e) => e.entries.some((x) => x.mask === 0xffff))).toBe(true);
    expect(extents.some((e) => e.entries.some((x) => x.mask !== 0 && x.mask !== 0xffff))).toBe(true);
  });

  test('exactly 58 clusters make one extent, no empty extent after it', async () => {
    const img = makeImage(58 * CL, prng(2), 'data');
    const { archive } = await writeArchive({ uuid: UUID, ctime: 1, configs: [], devices: [{ name: 'd', size: img.length }] }, clustersOf(1, img));
    expect(walk(archive).extents.map((e) => e.entries.length)).toEqual([58]);
  });

  test('diskless archive: the header plus one empty extent (13312 bytes for a small config)', async () => {
    const { archive, parts } = await writeArchive({ uuid: UUID, ctime: 1, configs: [conf], devices: [] }, []);
    expect(parts.map((p) => p.length)).toEqual([12800, 512]);
    expect(archive.length).toBe(13312);
    const { extents } = walk(archive);
    expect(extents).toEqual([{ offset: 12800, blockCount: 0, entries: [] }]);
  });

  test('a 512000-byte disk with data in its last 4 KiB: cluster 7, mask 0x1000 (§3.2, verified example)', async () => {
    const img = Buffer.alloc(512000);
    img.fill(0x5a, 512000 - 4096);
    const { archive } = await writeArchive({ uuid: UUID, ctime: 1, configs: [], devices: [{ name: 'd', size: 512000 }] }, clustersOf(1, img));
    const last = walk(archive).extents[0].entries[7];
    expect(last).toEqual({ devId: 1, cluster: 7, mask: 0x1000, reserved: 0 });
  });

  test('a block straddling the device end is stored whole, zero-padded (512512-byte disk, §3.5)', async () => {
    const img = Buffer.alloc(512512, 0x11);
    const { archive } = await writeArchive({ uuid: UUID, ctime: 1, configs: [], devices: [{ name: 'd', size: 512512 }] }, clustersOf(1, img));
    const e = walk(archive).extents[0];
    expect(e.entries[7].mask).toBe(0x3fff); // blocks 0..13; block 13 holds 512 device bytes
    const end = archive.length;
    const lastBlock = archive.subarray(end - BL, end);
    expect(lastBlock.subarray(0, 512).every((v) => v === 0x11)).toBe(true);
    expect(lastBlock.subarray(512).every((v) => v === 0)).toBe(true);
  });

  test('bytes past the device end in the data of the last cluster are ignored', async () => {
    const size = CL + 100;
    const data = Buffer.alloc(CL, 0x77); // the caller hands a full 64 KiB for the last cluster
    const { archive } = await writeArchive({ uuid: UUID, ctime: 1, configs: [], devices: [{ name: 'd', size }] }, [
      { devId: 1, cluster: 0, data: Buffer.alloc(CL) },
      { devId: 1, cluster: 1, data },
    ]);
    const e = walk(archive).extents[0];
    expect(e.entries[1].mask).toBe(1);
    const back = rebuildImages(await readAll(feed(archive, 'whole')));
    expect(back.get(1)!.subarray(CL).equals(Buffer.alloc(100, 0x77))).toBe(true);
    expect(archive.subarray(archive.length - BL + 100).every((v) => v === 0)).toBe(true);
  });

  test('deterministic for given uuid, ctime and cluster order', async () => {
    const img = makeImage(5 * CL + 1000, prng(3));
    const opts = { uuid: UUID, ctime: 7, configs: [conf], devices: [{ name: 'a', size: img.length }] };
    const a = (await writeArchive(opts, clustersOf(1, img))).archive;
    const b = (await writeArchive(opts, clustersOf(1, img))).archive;
    expect(a.equals(b)).toBe(true);
    expect(a.readBigInt64BE(24)).toBe(7n);
    expect(a.subarray(12800 + 8, 12800 + 24).equals(UUID)).toBe(true);
  });
});

describe('writeVma streaming', () => {
  test('yields each extent before pulling the next clusters (memory bounded), copies input buffers', async () => {
    const size = 200 * CL;
    let pulled = 0;
    const reused = Buffer.alloc(CL);
    function* source(): Generator<VmaClusterData> {
      for (let c = 0; c < 200; c++) {
        pulled++;
        reused.fill(c + 1); // the caller reuses one buffer for every cluster
        yield { devId: 1, cluster: c, data: reused };
      }
    }
    const gen = writeVma({ uuid: UUID, ctime: 1, configs: [], devices: [{ name: 'd', size }] }, source());
    const header = await gen.next();
    expect(pulled).toBe(0);
    expect(header.value.length).toBe(12800);
    const first = await gen.next();
    expect(pulled).toBe(58);
    expect(first.value.length).toBe(512 + 58 * CL);
    const rest: Buffer[] = [header.value, first.value];
    for (let r = await gen.next(); !r.done; r = await gen.next()) rest.push(r.value);
    const back = rebuildImages(await readAll(feed(Buffer.concat(rest), 'whole'))).get(1)!;
    for (let c = 0; c < 200; c++) expect(back[c * CL + 5]).toBe(c + 1);
  });

  test('accepts an async iterable, interleaved devices, any order', async () => {
    const rnd = prng(4);
    const a = makeImage(7 * CL + 3 * BL, rnd);
    const b = makeImage(3 * CL + 100, rnd);
    const order = shuffle([...clustersOf(1, a), ...clustersOf(2, b)], rnd);
    async function* src(): AsyncGenerator<VmaClusterData> {
      for (const c of order) yield c;
    }
    const opts: WriteVmaOptions = { uuid: UUID, ctime: 1, configs: [], devices: [{ name: 'a', size: a.length }, { name: 'b', size: b.length }] };
    const parts: Buffer[] = [];
    for await (const p of writeVma(opts, src())) parts.push(p);
    const back = rebuildImages(await readAll(feed(Buffer.concat(parts), 'odd')));
    expect(back.get(1)!.equals(a)).toBe(true);
    expect(back.get(2)!.equals(b)).toBe(true);
  });
});

describe('writeVma errors', () => {
  const opts: WriteVmaOptions = { uuid: UUID, ctime: 1, configs: [], devices: [{ name: 'drive-scsi0', size: 3 * CL + 512 }] };
  const full = (cluster: number, devId = 1): VmaClusterData => ({ devId, cluster, data: Buffer.alloc(CL, 1) });
  const run = (clusters: VmaClusterData[], o = opts) => errorOf(() => writeArchive(o, clusters));

  test.each([
    ['unknown dev_id', [full(0, 2)], 'dev_id', /unknown dev_id 2/],
    ['dev_id 0', [full(0, 0)], 'dev_id', /unknown dev_id 0/],
    ['cluster beyond the device', [full(4)], 'cluster_num', /cluster 4 beyond the end of device 'drive-scsi0' \(4 clusters\)/],
    ['negative cluster', [full(-1)], 'cluster_num', /beyond the end/],
    ['a cluster given twice', [full(0), full(1), full(0)], 'cluster_num', /cluster 0 of device 'drive-scsi0' given twice/],
    ['short data for a full cluster', [{ devId: 1, cluster: 0, data: Buffer.alloc(CL - 1) }], 'data', /has 65535 bytes, expected 65536/],
    ['too short for the last cluster', [full(0), full(1), full(2), { devId: 1, cluster: 3, data: Buffer.alloc(511) }], 'data', /expected 512\.\.65536/],
    ['data over 64 KiB', [{ devId: 1, cluster: 0, data: Buffer.alloc(CL + 1) }], 'data', /has 65537 bytes/],
    ['missing clusters at the end', [full(0), full(2), full(3)], 'cluster_num', /missing cluster 1 of device 'drive-scsi0' \(1 of 4 clusters never given\)/],
    ['no clusters at all', [], 'cluster_num', /missing cluster 0/],
  ])('%s', async (_name, clusters, field, message) => {
    const e = await run(clusters as VmaClusterData[]);
    expect(e).toBeInstanceOf(VmaFormatError);
    expect(e.field).toBe(field);
    expect(e.message).toMatch(message as RegExp);
  });

  test('the missing-cluster error comes before the last extent is yielded', async () => {
    const parts: Buffer[] = [];
    const e = await errorOf(async () => {
      for await (const p of writeVma(opts, [full(0)])) parts.push(p);
    });
    expect(e).toBeInstanceOf(VmaFormatError);
    expect(parts.length).toBe(1); // only the header
  });

  test('more than 254 devices', async () => {
    const devices = Array.from({ length: 255 }, (_, i) => ({ name: `d${i}`, size: 512 }));
    const e = await run([], { ...opts, devices });
    expect(e).toBeInstanceOf(VmaFormatError);
    expect(e.message).toMatch(/255 devices exceed the VMA limit of 254/);
  });

  test('header problems surface as VmaFormatError before anything is yielded', async () => {
    const e = await run([], { ...opts, uuid: Buffer.alloc(3) });
    expect(e).toBeInstanceOf(VmaFormatError);
    expect(e.field).toBe('uuid');
  });
});
