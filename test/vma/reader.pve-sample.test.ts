/**
 * The real PVE sample (test/fixtures/pve-sample-truncated.vma.gz, see test/fixtures/README.md):
 * a vzdump archive truncated after two extents. Expected values come from the fixture README,
 * which were checked against the reference `vma` tool and dissect's tests.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { VmaFormatError } from '../../src/errors';
import { expandCluster, readVma } from '../../src/vma/reader';
import type { VmaCluster } from '../../src/vma/types';
import { errorOf, feed, readAll, type FeedMode } from './helpers/vma-gen';

const gz = readFileSync(join(__dirname, '../fixtures/pve-sample-truncated.vma.gz'));
const sample = gunzipSync(gz);
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const present = (): number[] => {
  const ranges: [number, number][] = [[0, 22], [32, 54], [64, 103], [112, 119], [128, 135], [144, 150], [160, 166]];
  return ranges.flatMap(([a, b]) => Array.from({ length: b - a + 1 }, (_, i) => a + i));
};

test('the fixture is the documented file', () => {
  expect(sha256(gz)).toBe('ae113a05bc263fcff795f6902472821f860b7dabf817215ae79bc29204ba5f0d');
  expect(sample.length).toBe(538112);
  expect(sha256(sample)).toBe('9c649a8f6ddd65034b6e24f76f104b2ab213f43015fd36a6d49477b9b8841ad4');
});

test('header parses exactly', async () => {
  const first = await readVma(feed(sample, 'odd'), { checkComplete: false }).next();
  expect(first.done).toBe(false);
  if (first.value.type !== 'header') throw new Error('expected the header first');
  const h = first.value.header;
  expect(h.uuid.toString('hex')).toBe('04fc12eb0fed43229aaaf4e412f68096');
  expect(h.ctime).toBe(1635680622);
  expect(new Date(h.ctime * 1000).toISOString()).toBe('2021-10-31T11:43:42.000Z');
  expect(h.headerSize).toBe(12800);
  expect(h.configs.length).toBe(1);
  expect(h.configs[0].name).toBe('qemu-server.conf');
  expect(h.configs[0].data.length).toBe(417);
  expect(sha256(h.configs[0].data)).toBe('383cc8e9ab35d6a56b9a83b502263942253c807216c83eccae89a23ef040f950');
  expect(h.configs[0].data.toString()).toMatch(/#qmdump#map:scsi0:drive-scsi0:local-lvm:raw:\n$/);
  expect(h.devices).toEqual([{ id: 1, name: 'drive-scsi0', size: 10737418240 }]);
});

test('a complete read fails: missing cluster 23 of drive-scsi0', async () => {
  const e = await errorOf(() => readAll(feed(sample, 'odd'), { label: "'vzdump-qemu-100-2021_10_31-11_43_42.vma.gz'" }));
  expect(e).toBeInstanceOf(VmaFormatError);
  expect(e.field).toBe('cluster_num');
  expect(e.offset).toBe(538112);
  expect(e.message).toMatch(/missing cluster 23 of device 'drive-scsi0'/);
  expect(e.message).toMatch(/163724 of 163840 clusters missing/);
  expect(e.message.startsWith("'vzdump-qemu-100-2021_10_31-11_43_42.vma.gz': ")).toBe(true);
});

test.each(['whole', 'odd'] as FeedMode[])('with checkComplete:false all 116 clusters come out with the documented content (fed %s)', async (mode) => {
  const r = await readAll(feed(sample, mode), { checkComplete: false });
  expect(r.clusters.length).toBe(116);
  expect(r.clusters.every((c) => c.devId === 1)).toBe(true);
  expect(r.clusters.map((c) => c.cluster).sort((a, b) => a - b)).toEqual(present());
  // archive order as documented: extent 1 starts 90, 96, 112, 128, 144, 48, 160, 16, 91, 97
  expect(r.clusters.slice(58, 68).map((c) => c.cluster)).toEqual([90, 96, 112, 128, 144, 48, 160, 16, 91, 97]);
  expect(r.clusters.slice(0, 16).map((c) => c.cluster)).toEqual(Array.from({ length: 16 }, (_, i) => i));
  const byCluster = new Map<number, VmaCluster>(r.clusters.map((c) => [c.cluster, c]));
  const data = r.clusters.filter((c) => c.mask !== 0).map((c) => c.cluster).sort((a, b) => a - b);
  expect(data).toEqual([0, 16, 17, 18, 19, 20, 21, 22]);
  expect(data.every((c) => byCluster.get(c)!.mask === 0xffff)).toBe(true);
  const c0 = expandCluster(byCluster.get(0)!);
  expect(sha256(c0)).toBe('cf4adcf1933a8c9a0a3ff5588e1400e6beea8a32212b3a35ba08c7b08e4e6b1f');
  expect([c0[510], c0[511]]).toEqual([0x55, 0xaa]);
  for (let c = 1; c <= 15; c++) expect(expandCluster(byCluster.get(c)!).equals(Buffer.alloc(65536))).toBe(true);
  const range = Buffer.concat([16, 17, 18, 19, 20, 21, 22].map((c) => expandCluster(byCluster.get(c)!)));
  expect(range.length).toBe(458752);
  expect(sha256(range)).toBe('8c989a3aa590795fa919ccb7d1f28651c85f8a0d9ba00ab22cdd9fb760fa7955');
  // the reference `vma verify -v` summary: total bytes read 7602176, sparse bytes 7077888
  const total = r.clusters.length * 65536;
  const sparse = total - r.clusters.reduce((n, c) => n + c.blocks.length, 0);
  expect([total, sparse]).toEqual([7602176, 7077888]);
});

test('read through a real gunzip stream in its natural chunks', async () => {
  const { createGunzip } = await import('node:zlib');
  const { Readable } = await import('node:stream');
  const stream = Readable.from([gz]).pipe(createGunzip());
  const r = await readAll(stream, { checkComplete: false });
  expect(r.clusters.length).toBe(116);
});
