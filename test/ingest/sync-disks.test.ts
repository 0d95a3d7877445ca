import * as fs from 'node:fs';
import * as path from 'node:path';
import { compress } from '../../src/archive/compression';
import { loadClusterDigests } from '../../src/store/cluster-digest';
import { syncArchiveDisks } from '../../src/ingest/sync-disks';
import { writeVma } from '../../src/vma/writer';
import { useTempDir } from '../helpers/tmpdir';
import { CL, clustersOf, makeImage, prng, UUID } from '../vma/helpers/vma-gen';

beforeAll(() => loadClusterDigests());
const tmp = useTempDir('vz-sync-disks-');

const config = [{ name: 'qemu-server.conf', data: Buffer.from('cores: 2\n') }];

/** Writes `images` as a .vma.zst archive (drive-scsi0, drive-scsi1, ...) and returns its path. */
async function archive(dir: string, name: string, images: Buffer[]): Promise<string> {
  const header = { uuid: UUID, ctime: 1767225600, configs: config, devices: images.map((img, i) => ({ name: `drive-scsi${i}`, size: img.length })) };
  const file = path.join(dir, name);
  await fs.promises.writeFile(file, compress(writeVma(header, images.flatMap((img, i) => clustersOf(i + 1, img))), 'zst'));
  return file;
}

const openFds = () => fs.readdirSync('/proc/self/fd').length;

test('brings a plain directory up to date with each archive, writing only the clusters that changed', async () => {
  const dir = path.join(tmp(), 'guest');
  fs.mkdirSync(dir);
  const day1 = [makeImage(40 * CL + 512, prng(1), 'mixed'), makeImage(3 * CL, prng(2), 'data')];
  const first = await syncArchiveDisks(await archive(tmp(), 'day1.vma.zst', day1), dir);
  expect(first.header.devices.map((d) => d.name)).toEqual(['drive-scsi0', 'drive-scsi1']);
  expect(first.disks.map((d) => path.basename(d.image))).toEqual(['disk-drive-scsi0.raw', 'disk-drive-scsi1.raw']);
  first.disks.forEach((d, i) => {
    expect(fs.readFileSync(d.image).equals(day1[i]!)).toBe(true);
    expect(fs.statSync(d.digests).size).toBe(Math.ceil(day1[i]!.length / CL) * 32);
  });

  // day 2: three clusters of the first disk change
  const day2 = day1.map((img) => Buffer.from(img));
  for (const c of [0, 17, 40]) day2[0]!.fill(0xa5, c * CL + 100, c * CL + 200);
  const second = await syncArchiveDisks(await archive(tmp(), 'day2.vma.zst', day2), dir, { diskSync: { recordSize: CL } });
  expect(second.disks[0]!.stats).toMatchObject({ clusters: 41, unchanged: 38, clustersWritten: 3, rewritten: 3 });
  expect(second.disks[1]!.stats).toMatchObject({ clusters: 3, unchanged: 3, clustersWritten: 0, bytesWritten: 0 });
  second.disks.forEach((d, i) => expect(fs.readFileSync(d.image).equals(day2[i]!)).toBe(true));
});

test('reports progress up to every cluster of every disk', async () => {
  const images = [makeImage(2100 * CL, prng(5), 'zero')];
  const seen: number[] = [];
  await syncArchiveDisks(await archive(tmp(), 'p.vma.zst', images), tmp(), {
    onProgress: (p) => {
      expect(p.totalClusters).toBe(2100);
      seen.push(p.clusters);
    },
  });
  expect(seen.length).toBeGreaterThanOrEqual(3);
  expect(seen.at(-1)).toBe(2100);
});

test('a header the caller refuses stops the pass before any image is opened', async () => {
  const file = await archive(tmp(), 'h.vma.zst', [makeImage(4 * CL, prng(3), 'data')]);
  const dir = path.join(tmp(), 'guest');
  fs.mkdirSync(dir);
  await expect(
    syncArchiveDisks(file, dir, {
      onHeader: (h) => {
        throw new Error(`refused ${h.devices.length} device(s)`);
      },
    }),
  ).rejects.toThrow('refused 1 device(s)');
  expect(fs.readdirSync(dir)).toEqual([]);
});

test('a truncated archive fails with its name and leaves no image file open', async () => {
  const images = [makeImage(200 * CL, prng(4), 'data')];
  const good = fs.readFileSync(await archive(tmp(), 'whole.vma.zst', images));
  const cut = path.join(tmp(), 'cut.vma.zst');
  fs.writeFileSync(cut, good.subarray(0, good.length >> 1));
  const before = openFds();
  await expect(syncArchiveDisks(cut, tmp(), { label: 'cut.vma.zst' })).rejects.toThrow(/cut\.vma\.zst/);
  expect(openFds()).toBe(before);
});

test('a stop request ends the pass with every image closed', async () => {
  const file = await archive(tmp(), 's.vma.zst', [makeImage(3000 * CL, prng(6), 'zero')]);
  const ac = new AbortController();
  const before = openFds();
  await expect(
    syncArchiveDisks(file, tmp(), {
      signal: ac.signal,
      onProgress: (p) => {
        if (p.clusters >= 1024) ac.abort();
      },
    }),
  ).rejects.toMatchObject({ name: 'AbortError' });
  expect(openFds()).toBe(before);
});
