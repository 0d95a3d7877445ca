import { CompressionError, VmaFormatError, VzError } from '../../src/errors';
import { MAX_EXTENT_SIZE } from '../../src/vma/constants';
import type { BlockInfo } from '../../src/vma/extent';
import type { VmaHeaderInput } from '../../src/vma/header';
import { ChunkPool } from '../../src/archive/chunk-pool';
import { expandCluster, readVma } from '../../src/vma/reader';
import type { VmaClusterData } from '../../src/vma/types';
import {
  bi,
  BL,
  CL,
  clustersOf,
  craftArchive,
  errorOf,
  feed,
  makeImage,
  prng,
  readAll,
  rebuildImages,
  shuffle,
  UUID,
  writeArchive,
  type FeedMode,
} from './helpers/vma-gen';

const LABEL = "'vzdump-qemu-101-2026_01_01-00_00_00.vma.zst'";
const conf = { name: 'qemu-server.conf', data: Buffer.from('cores: 2\n#qmdump#map:scsi0:drive-scsi0:local-zfs:raw:\n') };
const fw = { name: 'qemu-server.fw', data: Buffer.from('[OPTIONS]\n') };

interface Scenario {
  name: string;
  sizes: number[];
  kinds?: ('mixed' | 'zero' | 'data')[];
  shuffled: boolean;
  bytes: boolean; // small enough to feed byte by byte
}

const scenarios: Scenario[] = [
  { name: 'three devices, odd sizes, interleaved out of order', sizes: [7 * CL + 3 * BL + 512, 2 * CL + 100, 5 * CL], kinds: ['mixed', 'data', 'zero'], shuffled: true, bytes: false },
  { name: 'one small device, sequential', sizes: [CL + 512], kinds: ['mixed'], shuffled: false, bytes: true },
  { name: 'two tiny devices interleaved (sizes below one block and one cluster)', sizes: [100, 3 * BL + 1], kinds: ['data', 'data'], shuffled: true, bytes: true },
  { name: 'all-zero device of 130 clusters (three extents, no data blocks)', sizes: [130 * CL], kinds: ['zero'], shuffled: false, bytes: true },
  { name: 'all-data device spanning several extents', sizes: [120 * CL + 4 * BL], kinds: ['data'], shuffled: true, bytes: false },
  { name: 'diskless (configs only)', sizes: [], shuffled: false, bytes: true },
];

async function buildScenario(s: Scenario, seed: number): Promise<{ archive: Buffer; images: Buffer[] }> {
  const rnd = prng(seed);
  const images = s.sizes.map((size, i) => makeImage(size, rnd, s.kinds?.[i] ?? 'mixed'));
  let clusters: VmaClusterData[] = images.flatMap((img, i) => clustersOf(i + 1, img));
  if (s.shuffled) clusters = shuffle(clusters, rnd);
  const { archive } = await writeArchive(
    { uuid: UUID, ctime: 1767225600, configs: [conf, fw], devices: images.map((img, i) => ({ name: `drive-scsi${i}`, size: img.length })) },
    clusters,
  );
  return { archive, images };
}

describe('round trips through writeVma and readVma', () => {
  for (const [si, s] of scenarios.entries()) {
    const modes: FeedMode[] = s.bytes ? ['whole', 'odd', 'bytes'] : ['whole', 'odd'];
    test.each(modes)(`${s.name}, fed %s`, async (mode) => {
      const { archive, images } = await buildScenario(s, 100 + si);
      const r = await readAll(feed(archive, mode, si + 1));
      expect(r.header.uuid.equals(UUID)).toBe(true);
      expect(r.header.ctime).toBe(1767225600);
      expect(r.header.configs).toEqual([conf, fw]);
      expect(r.header.devices).toEqual(images.map((img, i) => ({ id: i + 1, name: `drive-scsi${i}`, size: img.length })));
      const total = images.reduce((n, img) => n + Math.ceil(img.length / CL), 0);
      expect(r.clusters.length).toBe(total);
      const back = rebuildImages(r);
      images.forEach((img, i) => expect(back.get(i + 1)!.equals(img)).toBe(true));
      for (const c of r.clusters) {
        expect(c.blocks.length).toBe(
          c.mask === 0xffff ? CL : [...Array(16).keys()].filter((j) => c.mask & (1 << j)).length * BL,
        );
      }
    });
  }

  test('cluster records come out in archive order, interleaved as written', async () => {
    const rnd = prng(9);
    const a = makeImage(4 * CL, rnd, 'data');
    const b = makeImage(4 * CL, rnd, 'data');
    const order = shuffle([...clustersOf(1, a), ...clustersOf(2, b)], rnd);
    const { archive } = await writeArchive({ uuid: UUID, ctime: 1, configs: [], devices: [{ name: 'a', size: a.length }, { name: 'b', size: b.length }] }, order);
    const r = await readAll(feed(archive, 'odd'));
    expect(r.clusters.map((c) => [c.devId, c.cluster])).toEqual(order.map((c) => [c.devId, c.cluster]));
  });

  test('Uint8Array chunks are accepted', async () => {
    const { archive, images } = await buildScenario(scenarios[1], 5);
    async function* u8(): AsyncGenerator<Uint8Array> {
      for (let o = 0; o < archive.length; o += 1000) yield new Uint8Array(archive.buffer, archive.byteOffset + o, Math.min(1000, archive.length - o));
    }
    expect(rebuildImages(await readAll(u8())).get(1)!.equals(images[0])).toBe(true);
  });
});

// ---- archives crafted with the pure encoders (layouts our writer never produces) ----------------

const devs: VmaHeaderInput = {
  uuid: UUID,
  ctime: 5,
  configs: [conf],
  devices: [
    { id: 1, name: 'drive-scsi0', size: 3 * CL + 5 * BL + 100 }, // 4 clusters; blocks 0..5 of cluster 3 start before the end
    { id: 3, name: 'drive-virtio1', size: 2 * CL }, // dev_id 2 unused
  ],
};

/** Data for entries, taken from per-device images, so the expected images are known. */
function dataFor(entries: BlockInfo[], images: Map<number, Buffer>): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    if (e.devId === 0) continue;
    for (let j = 0; j < 16; j++) {
      if (!(e.mask & (1 << j))) continue;
      const img = images.get(e.devId)!;
      const block = Buffer.alloc(BL);
      const start = e.cluster * CL + j * BL;
      if (start < img.length) img.copy(block, 0, start, Math.min(img.length, start + BL));
      parts.push(block);
    }
  }
  return Buffer.concat(parts);
}

/** Images with data exactly in the masked blocks of the given entries, zero elsewhere. */
function imagesFor(entryLists: BlockInfo[][], seed: number): Map<number, Buffer> {
  const rnd = prng(seed);
  const images = new Map(devs.devices.map((d) => [d.id, Buffer.alloc(d.size)]));
  for (const e of entryLists.flat()) {
    if (e.devId === 0) continue;
    const img = images.get(e.devId)!;
    for (let j = 0; j < 16; j++) {
      if (!(e.mask & (1 << j))) continue;
      const start = e.cluster * CL + j * BL;
      for (let k = start; k < Math.min(img.length, start + BL); k++) img[k] = 1 + (rnd() % 255);
    }
  }
  return images;
}

function craft(entryLists: BlockInfo[][], seed = 1, header = devs): { archive: Buffer; images: Map<number, Buffer> } {
  const images = imagesFor(entryLists, seed);
  const archive = craftArchive(
    header,
    entryLists.map((entries) => ({ entries, data: dataFor(entries, images) })),
  );
  return { archive, images };
}

/** Every cluster of both devices, as entries. */
const allClusters = (mask: (dev: number, c: number) => number): BlockInfo[] => [
  ...[0, 1, 2, 3].map((c) => bi(1, c, mask(1, c))),
  ...[0, 1].map((c) => bi(3, c, mask(3, c))),
];

describe('crafted layouts the reader must accept', () => {
  test('empty slots anywhere (even with masks set), an empty extent in the middle, reserved byte set', async () => {
    const e1: BlockInfo[] = [bi(0, 99, 0xffff), bi(3, 1, 0x8001, 0xff), bi(0, 0, 0x0f0f), bi(1, 2, 0xffff), bi(0, 7, 0)];
    const e2: BlockInfo[] = [];
    const e3: BlockInfo[] = [bi(1, 0, 0x0100), bi(0, 1, 0xffff), bi(1, 1, 0), bi(1, 3, 0x003f), bi(3, 0, 0xffff)];
    const { archive, images } = craft([e1, e2, e3]);
    for (const mode of ['whole', 'odd', 'bytes'] as FeedMode[]) {
      const r = await readAll(feed(archive, mode));
      expect(r.clusters.map((c) => [c.devId, c.cluster, c.mask])).toEqual([
        [3, 1, 0x8001],
        [1, 2, 0xffff],
        [1, 0, 0x0100],
        [1, 1, 0],
        [1, 3, 0x003f],
        [3, 0, 0xffff],
      ]);
      const back = rebuildImages(r);
      expect(back.get(1)!.equals(images.get(1)!)).toBe(true);
      expect(back.get(3)!.equals(images.get(3)!)).toBe(true);
    }
  });

  test('a 59-cluster extent', async () => {
    const header: VmaHeaderInput = { ...devs, devices: [{ id: 1, name: 'big', size: 59 * CL }] };
    const entries = Array.from({ length: 59 }, (_, c) => bi(1, 58 - c, c % 3 === 0 ? 0xffff : c % 3 === 1 ? 0 : 0x1248));
    const images = new Map([[1, Buffer.alloc(59 * CL)]]);
    const rnd = prng(3);
    for (const e of entries) for (let j = 0; j < 16; j++) if (e.mask & (1 << j)) images.get(1)!.fill(1 + (rnd() % 255), e.cluster * CL + j * BL, e.cluster * CL + (j + 1) * BL);
    const archive = craftArchive(header, [{ entries, data: dataFor(entries, images) }]);
    expect(archive.length).toBeLessThanOrEqual(12800 + MAX_EXTENT_SIZE);
    const r = await readAll(feed(archive, 'odd'));
    expect(r.clusters.length).toBe(59);
    expect(rebuildImages(r).get(1)!.equals(images.get(1)!)).toBe(true);
  });

  test('mask 0xffff on a last cluster whose 16 blocks all start before the device end', async () => {
    const header: VmaHeaderInput = { ...devs, devices: [{ id: 1, name: 'd', size: 15 * BL + 1 }] };
    const archive = craftArchive(header, [{ entries: [bi(1, 0, 0xffff)] }]);
    const r = await readAll(feed(archive, 'whole'));
    expect(r.clusters[0].blocks.length).toBe(CL);
  });

  test('a device named vmstate is read as an ordinary device', async () => {
    const header: VmaHeaderInput = { ...devs, devices: [{ id: 1, name: 'vmstate', size: 2 * CL }] };
    const archive = craftArchive(header, [{ entries: [bi(1, 1, 1), bi(1, 0, 0)] }]);
    const r = await readAll(feed(archive, 'whole'));
    expect(r.header.devices[0].name).toBe('vmstate');
    expect(r.clusters.map((c) => c.cluster)).toEqual([1, 0]);
  });
});

// ---- errors ----------------------------------------------------------------------------------

async function readError(archive: Buffer | AsyncIterable<Buffer>, opts: { checkComplete?: boolean; mode?: FeedMode } = {}): Promise<VmaFormatError> {
  const input = Buffer.isBuffer(archive) ? feed(archive, opts.mode ?? 'odd') : archive;
  const e = await errorOf(() => readAll(input, { label: LABEL, checkComplete: opts.checkComplete }));
  expect(e).toBeInstanceOf(VmaFormatError);
  expect(e.message.startsWith(`${LABEL}: `)).toBe(true);
  expect(e.message).not.toContain('\n');
  return e as unknown as VmaFormatError;
}

describe('extent errors', () => {
  const valid = craft([allClusters((d, c) => (c === 0 ? 0xffff : 0x0011)).slice(0, 3), allClusters(() => 0x0011).slice(3)]);
  const ext2 = 12800 + 512 + (16 + 2 + 2) * BL; // offset of the second extent

  test('the valid crafted archive reads fine', async () => {
    const r = await readAll(feed(valid.archive, 'whole'));
    expect(r.clusters.length).toBe(6);
  });

  test.each([
    ['magic', 0, 'magic', /wrong magic/],
    ['reserved1', 5, 'reserved1', /reserved1 is/],
    ['block_count (caught by the MD5)', 7, 'md5sum', /MD5 mismatch/],
    ['uuid', 8, 'uuid', /uuid differs/],
    ['md5sum', 30, 'md5sum', /MD5 mismatch/],
    ['blockinfo mask', 40, 'md5sum', /MD5 mismatch/],
    ['blockinfo dev_id', 43, 'md5sum', /MD5 mismatch/],
    ['blockinfo cluster', 47, 'md5sum', /MD5 mismatch/],
    ['an empty slot', 500, 'md5sum', /MD5 mismatch/],
  ])('bit flip in the second extent: %s', async (_name, at, field, message) => {
    const b = Buffer.from(valid.archive);
    b[ext2 + at] ^= 0x04;
    const e = await readError(b);
    expect(e.field).toBe(field);
    expect(e.offset).toBe(ext2);
    expect(e.message).toMatch(new RegExp(`extent at offset ${ext2}: `));
    expect(e.message).toMatch(message);
  });

  test('a bit flip in the data is not detectable (VMA has no data checksum)', async () => {
    const b = Buffer.from(valid.archive);
    b[ext2 + 512 + 10] ^= 1;
    const r = await readAll(feed(b, 'whole'));
    expect(r.clusters.length).toBe(6);
  });

  const cases: [string, BlockInfo[][], string, RegExp, VmaHeaderInput?][] = [
    ['unknown dev_id', [[bi(2, 0, 0)]], 'dev_id', /slot 0: unknown dev_id 2/],
    ['dev_id 255', [[bi(1, 0, 0), bi(255, 0, 0)]], 'dev_id', /slot 1: unknown dev_id 255/],
    ['cluster beyond the device', [[bi(3, 2, 0)]], 'cluster_num', /cluster 2 beyond the end of device 'drive-virtio1' \(2 clusters\)/],
    ['cluster 2^32-1', [[bi(1, 2 ** 32 - 1, 0)]], 'cluster_num', /beyond the end/],
    ['a block starting past the device end', [[bi(1, 3, 0x0040)]], 'mask', /mask 0x40 of cluster 3 of device 'drive-scsi0' stores blocks past the device end/],
    ['mask 0xfffe on a short last cluster', [[bi(1, 3, 0xfffe)]], 'mask', /mask 0xfffe of cluster 3 .* stores blocks past the device end/],
    ['a duplicate inside one extent', [[bi(1, 0, 1), bi(1, 0, 0)]], 'cluster_num', /slot 1: duplicated cluster 0 of device 'drive-scsi0'/],
    ['a duplicate across extents', [[bi(1, 1, 0)], [bi(3, 0, 0), bi(1, 1, 0)]], 'cluster_num', /duplicated cluster 1 of device 'drive-scsi0'/],
  ];
  test.each(cases)('%s', async (_name, lists, field, message) => {
    const { archive } = craft(lists);
    const e = await readError(archive);
    expect(e.field).toBe(field);
    expect(e.message).toMatch(message);
  });

  test('mask 0xffff on a short last cluster (PVE before June 2020) is read as vma-reader.c does: clipped at the device end', async () => {
    const whole = Buffer.alloc(CL, 0xee); // blocks 6..15 lie past the end of drive-scsi0
    for (let j = 0; j < 6; j++) whole.fill(j + 1, j * BL, (j + 1) * BL);
    const entries = allClusters((d, c) => (d === 1 && c === 3 ? 0xffff : 0));
    const archive = craftArchive(devs, [{ entries, data: whole }]);
    const r = await readAll(feed(archive, 'whole'));
    const last = r.clusters.find((c) => c.devId === 1 && c.cluster === 3)!;
    expect(last.mask).toBe(0x003f);
    expect(Buffer.from(last.blocks)).toEqual(whole.subarray(0, 6 * BL));
    const image = rebuildImages(r).get(1)!;
    expect(image.length).toBe(devs.devices[0]!.size);
    expect(image.subarray(3 * CL)).toEqual(whole.subarray(0, 5 * BL + 100));
  });

  test('block_count not matching the masks, with a valid MD5', async () => {
    const archive = craftArchive(devs, [{ entries: [bi(1, 0, 0x3)], blockCount: 3 }]);
    const e = await readError(archive);
    expect(e.field).toBe('block_count');
    expect(e.offset).toBe(12800);
  });

  test('an extent from another archive (uuid) with a valid MD5', async () => {
    const archive = craftArchive(devs, [{ entries: allClusters(() => 0) }, { entries: [], uuid: Buffer.alloc(16, 1) }]);
    expect((await readError(archive)).field).toBe('uuid');
  });

  test('no cluster of a bad extent is yielded', async () => {
    const { archive } = craft([[bi(1, 0, 1), bi(1, 0, 0)]]);
    const seen: string[] = [];
    await errorOf(async () => {
      for await (const r of readVma(feed(archive, 'whole'))) seen.push(r.type);
    });
    expect(seen).toEqual(['header']);
  });
});

describe('completeness and stream ends', () => {
  const lists = [allClusters((d, c) => (c % 2 ? 0x0021 : 0)).slice(0, 4), allClusters(() => 0x0002).slice(4)];
  const { archive } = craft(lists);
  const extentEnds = [12800, 12800 + 512 + 4 * BL, archive.length];

  test('missing clusters are reported with checkComplete (default), accepted without', async () => {
    const partial = craft([[bi(1, 0, 0), bi(1, 1, 0), bi(3, 0, 0), bi(3, 1, 0), bi(1, 3, 0)]]).archive;
    const e = await readError(partial);
    expect(e.field).toBe('cluster_num');
    expect(e.offset).toBe(partial.length);
    expect(e.message).toMatch(/missing cluster 2 of device 'drive-scsi0' \(1 of 4 clusters missing/);
    const r = await readAll(feed(partial, 'whole'), { checkComplete: false });
    expect(r.clusters.length).toBe(5);
  });

  test('the complete crafted archive reads fine', async () => {
    expect((await readAll(feed(archive, 'whole'))).clusters.length).toBe(6);
  });

  test('truncation at any offset fails with checkComplete; without it, only extent boundaries pass', async () => {
    const offsets = new Set<number>([0, 1, 3, 4, 59, 60, 61, 12287, 12288, 12799, 12801, 13311, 13312, 13313]);
    for (let o = 0; o < archive.length; o += 997) offsets.add(o);
    for (const end of extentEnds) for (const d of [-513, -512, -511, -4096, -1, 1]) offsets.add(end + d);
    const wrong: string[] = [];
    for (const cut of [...offsets].filter((o) => o >= 0 && o < archive.length).sort((a, b) => a - b)) {
      const part = archive.subarray(0, cut);
      for (const checkComplete of [true, false]) {
        let outcome: string;
        try {
          await readAll(feed(part, 'odd', cut), { checkComplete });
          outcome = 'ok';
        } catch (e) {
          outcome = e instanceof VmaFormatError ? `error:${e.field}` : `bad error ${String(e)}`;
        }
        const mayPass = !checkComplete && extentEnds.includes(cut);
        if (mayPass ? outcome !== 'ok' : !outcome.startsWith('error:')) wrong.push(`cut ${cut} checkComplete ${checkComplete}: ${outcome}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  test('specific truncation messages', async () => {
    expect((await readError(Buffer.alloc(0))).message).toMatch(/vma header truncated: stream ends after 0 bytes/);
    expect((await readError(archive.subarray(0, 12000))).field).toBe('header_size');
    const e = await readError(archive.subarray(0, 12800 + 100));
    expect(e.field).toBe('extent');
    expect(e.offset).toBe(12800);
    expect(e.message).toMatch(/stream ends 100 bytes into a 512-byte extent header/);
    const d = await readError(archive.subarray(0, 12800 + 512 + 5000));
    expect(d.field).toBe('data');
    expect(d.message).toMatch(/truncated, stream ends after 5000 of 16384 data bytes/);
  });

  test.each([
    ['1 byte', Buffer.alloc(1), 'extent'],
    ['100 zero bytes (the reference rejects this too)', Buffer.alloc(100), 'extent'],
    ['511 bytes', Buffer.alloc(511, 0xff), 'extent'],
    ['512 zero bytes', Buffer.alloc(512), 'magic'],
    ['a copy of the first extent', null, 'cluster_num'],
  ])('trailing %s after the last extent', async (_name, tail, field) => {
    const extra = tail ?? archive.subarray(extentEnds[0], extentEnds[1]);
    const e = await readError(Buffer.concat([archive, extra]), { checkComplete: false });
    expect(e.field).toBe(field);
    expect(e.offset).toBe(archive.length);
  });

  test('header errors carry the label too', async () => {
    const gz = Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), Buffer.alloc(20000)]);
    const e = await readError(gz);
    expect(e.field).toBe('magic');
    expect(e.message).toMatch(/^'vzdump-qemu-101-2026_01_01-00_00_00\.vma\.zst': vma header: not a VMA archive: .*gzip-compressed/);
    const short = await readError(Buffer.from([0x28, 0xb5]));
    expect(short.field).toBe('magic');
    const bad = Buffer.from(archive.subarray(0, 12800));
    bad.writeUInt32BE(12288, 56);
    expect((await readError(bad)).field).toBe('header_size');
    const flip = Buffer.from(archive);
    flip[100] ^= 1;
    expect((await readError(flip)).field).toBe('md5sum');
  });
});

describe('streaming behaviour', () => {
  /** A source of fixed-size chunks that records what was pulled and whether it was closed. */
  function source(buf: Buffer, chunk: number) {
    const state = { pulled: 0, closed: false };
    async function* gen(): AsyncGenerator<Buffer> {
      try {
        for (let o = 0; o < buf.length; o += chunk) {
          state.pulled = Math.min(buf.length, o + chunk);
          yield buf.subarray(o, o + chunk);
        }
      } finally {
        state.closed = true;
      }
    }
    return { state, input: gen() };
  }

  test('pulls only what the next record needs', async () => {
    const rnd = prng(11);
    const img = makeImage(120 * CL, rnd, 'data');
    const { archive } = await writeArchive({ uuid: UUID, ctime: 1, configs: [], devices: [{ name: 'd', size: img.length }] }, clustersOf(1, img));
    const { state, input } = source(archive, 4096);
    const it = readVma(input)[Symbol.asyncIterator]();
    expect(state.pulled).toBe(0);
    const h = await it.next();
    expect(h.value.type).toBe('header');
    expect(state.pulled).toBeLessThan(12800 + 4096);
    const ext1End = 12800 + 512 + 58 * CL;
    for (let i = 0; i < 58; i++) {
      const r = await it.next();
      expect(r.value.type).toBe('cluster');
      expect(state.pulled).toBeGreaterThanOrEqual(ext1End);
      expect(state.pulled).toBeLessThan(ext1End + 4096);
    }
    await it.next(); // first cluster of the second extent
    expect(state.pulled).toBeLessThan(ext1End + 512 + 58 * CL + 4096);
    await it.return?.(undefined);
    expect(state.closed).toBe(true);
  });

  test('stopping early closes the input', async () => {
    const { archive } = await buildScenario(scenarios[1], 1);
    const { state, input } = source(archive, 1000);
    for await (const r of readVma(input)) if (r.type === 'header') break;
    expect(state.closed).toBe(true);
  });

  test('a format error closes the input', async () => {
    const bad = Buffer.concat([Buffer.from('NOPE'), Buffer.alloc(20000)]);
    const { state, input } = source(bad, 1000);
    await errorOf(() => readAll(input));
    expect(state.closed).toBe(true);
  });

  test('errors from the input pass through unchanged', async () => {
    const { archive } = await buildScenario(scenarios[1], 1);
    const boom = new CompressionError("'x.vma.zst': zstd failed", ['zstd', '-d'], 1, 'corrupt block');
    async function* failing(): AsyncGenerator<Buffer> {
      yield archive.subarray(0, 20000);
      throw boom;
    }
    const e = await errorOf(() => readAll(failing()));
    expect(e).toBe(boom);
    expect(VzError.isVzError(e)).toBe(true);
  });

  test('an extent lying inside one input chunk is not copied: blocks are views of that chunk', async () => {
    const { archive } = await buildScenario(scenarios[4], 3);
    const r = await readAll(feed(archive, 'whole'));
    const withData = r.clusters.filter((c) => c.mask !== 0);
    expect(withData.length).toBeGreaterThan(100);
    expect(withData.every((c) => c.blocks.buffer === archive.buffer)).toBe(true);
  });

  test('cluster blocks stay valid after later records are read (no shared buffer reuse)', async () => {
    const { archive, images } = await buildScenario(scenarios[4], 2);
    for (const mode of ['whole', 'odd'] as FeedMode[]) {
      const r = await readAll(feed(archive, mode)); // keeps every record, then compares
      expect(rebuildImages(r).get(1)!.equals(images[0])).toBe(true);
    }
  });
});

describe('transient mode (buffers reused, input chunks released)', () => {
  /**
   * Feeds `archive` through a pool of `chunk`-byte buffers, as openArchive does for a plain file;
   * a released buffer is scribbled over at once, so a release that came too early shows up as
   * wrong data in a record the consumer is still reading.
   */
  function pooled(archive: Buffer, chunk: number) {
    const pool = new ChunkPool(chunk, 1 << 16); // keeps every released buffer, so reuse is visible
    const seen = new Set<ArrayBufferLike>();
    const release = (view: Buffer) => {
      const whole = Buffer.from(view.buffer, 0, chunk);
      pool.release(view);
      whole.fill(0xee);
    };
    async function* input(): AsyncGenerator<Buffer> {
      for (let o = 0; o < archive.length; o += chunk) {
        const b = pool.get();
        seen.add(b.buffer);
        const n = archive.copy(b, 0, o, o + chunk);
        yield b.subarray(0, n);
      }
    }
    return { pool, seen, release, input: input() };
  }

  /** Consumes like DiskSync does: each record is used (copied out) before the next is asked for. */
  async function readTransient(input: AsyncIterable<Buffer>, release: (b: Buffer) => void): Promise<{ images: Map<number, Buffer>; blockBuffers: Set<ArrayBufferLike> }> {
    const images = new Map<number, Buffer>();
    const blockBuffers = new Set<ArrayBufferLike>();
    for await (const r of readVma(input, { transient: true, release })) {
      if (r.type === 'header') {
        for (const d of r.header.devices) images.set(d.id, Buffer.alloc(d.size));
        continue;
      }
      if (r.blocks.length > 0) blockBuffers.add(r.blocks.buffer);
      const img = images.get(r.devId)!;
      expandCluster(r).copy(img, r.cluster * CL, 0, Math.min(CL, img.length - r.cluster * CL));
    }
    return { images, blockBuffers };
  }

  test.each([1000, 4096, CL + 7, 1 << 20])('records are right when the input reuses %d-byte buffers as soon as they are released', async (chunk) => {
    for (const si of [0, 4]) {
      const { archive, images } = await buildScenario(scenarios[si], 40 + si);
      const { pool, seen, release, input } = pooled(archive, chunk);
      const got = await readTransient(input, release);
      images.forEach((img, i) => expect(got.images.get(i + 1)!.equals(img)).toBe(true));
      // buffers went round: far fewer than the archive needs chunks, bounded by one extent
      expect(seen.size).toBeLessThanOrEqual(Math.ceil(MAX_EXTENT_SIZE / chunk) + 3);
      if (archive.length > 4 * MAX_EXTENT_SIZE) expect(seen.size).toBeLessThan(archive.length / chunk / 2);
      expect(pool.inUse).toBe(0); // every chunk went back by the end of the stream
    }
  });

  test('clusters that span input chunks are assembled in at most one extent of reused buffers', async () => {
    const { archive, images } = await buildScenario(scenarios[4], 8);
    const got = await readTransient(feed(archive, 'odd', 3), () => undefined);
    expect(got.images.get(1)!.equals(images[0])).toBe(true);
    const ownBuffers = [...got.blockBuffers].filter((b) => b !== archive.buffer);
    expect(ownBuffers.length).toBeGreaterThan(0);
    expect(ownBuffers.length).toBeLessThanOrEqual(59);
  });

  test('release without transient mode is a programming error', async () => {
    const { archive } = await buildScenario(scenarios[1], 1);
    await expect(readAll(feed(archive, 'whole'), { release: () => undefined })).rejects.toThrow(TypeError);
  });
});

describe('expandCluster', () => {
  test('fills zero blocks in, 65536 bytes', () => {
    const blocks = Buffer.concat([Buffer.alloc(BL, 1), Buffer.alloc(BL, 2)]);
    const out = expandCluster({ devId: 1, cluster: 0, mask: 0x8002, blocks });
    expect(out.length).toBe(CL);
    expect(out.subarray(BL, 2 * BL).every((v) => v === 1)).toBe(true);
    expect(out.subarray(15 * BL).every((v) => v === 2)).toBe(true);
    expect(out.subarray(0, BL).every((v) => v === 0)).toBe(true);
    expect(out.subarray(2 * BL, 15 * BL).every((v) => v === 0)).toBe(true);
    expect(expandCluster({ devId: 1, cluster: 0, mask: 0, blocks: Buffer.alloc(0) }).equals(Buffer.alloc(CL))).toBe(true);
    const full = Buffer.alloc(CL, 9);
    expect(expandCluster({ devId: 1, cluster: 0, mask: 0xffff, blocks: full }).equals(full)).toBe(true);
  });

  test('expands into a given buffer, zeroing what it held before', () => {
    const into = Buffer.alloc(CL, 0x5a);
    const blocks = Buffer.concat([Buffer.alloc(BL, 1), Buffer.alloc(BL, 2)]);
    const out = expandCluster({ devId: 1, cluster: 0, mask: 0x8002, blocks }, into);
    expect(out.buffer).toBe(into.buffer);
    expect(out.equals(expandCluster({ devId: 1, cluster: 0, mask: 0x8002, blocks }))).toBe(true);
    const full = Buffer.alloc(CL, 9);
    expect(expandCluster({ devId: 1, cluster: 0, mask: 0xffff, blocks: full }, into)).toBe(full);
    expect(() => expandCluster({ devId: 1, cluster: 0, mask: 1, blocks: Buffer.alloc(BL) }, Buffer.alloc(100))).toThrow(RangeError);
  });

  test('a blocks length that does not match the mask is a programming error', () => {
    expect(() => expandCluster({ devId: 1, cluster: 0, mask: 3, blocks: Buffer.alloc(BL) })).toThrow(RangeError);
  });
});
