import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compress } from '../../src/archive/compression';
import { readArchiveRecords } from '../../src/ingest/archive-records';
import { expandCluster } from '../../src/vma/reader';
import { writeVma } from '../../src/vma/writer';
import { CL, clustersOf, makeImage, prng, UUID } from '../vma/helpers/vma-gen';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vz-records-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** 24 MiB of mixed data (several 4 MiB pool chunks) plus an odd-sized second disk. */
const images = [makeImage(384 * CL + 4096, prng(3), 'mixed'), makeImage(3 * CL + 100, prng(4), 'data')];
const header = { uuid: UUID, ctime: 1767225600, configs: [{ name: 'qemu-server.conf', data: Buffer.from('cores: 2\n') }], devices: images.map((img, i) => ({ name: `drive-scsi${i}`, size: img.length })) };
const clusters = () => images.flatMap((img, i) => clustersOf(i + 1, img));

/** Copies each cluster out as it arrives (what a transient consumer may do), then compares. */
async function rebuild(file: string): Promise<Buffer[]> {
  const out = images.map((img) => Buffer.alloc(img.length));
  for await (const r of readArchiveRecords(file)) {
    if (r.type !== 'cluster') continue;
    const img = out[r.devId - 1]!;
    expandCluster(r).copy(img, r.cluster * CL, 0, Math.min(CL, img.length - r.cluster * CL));
  }
  return out;
}

test.each(['vma', 'vma.zst'])('a .%s archive of several pool chunks reads back exactly when each record is copied out as it arrives', async (ext) => {
  const file = path.join(dir, `vzdump-qemu-100-2026_01_01-00_00_00.${ext}`);
  const vma = writeVma(header, clusters());
  await fs.promises.writeFile(file, ext === 'vma' ? vma : compress(vma, 'zst'));
  const back = await rebuild(file);
  back.forEach((b, i) => expect(b.equals(images[i]!)).toBe(true));
});

test('errors name the archive', async () => {
  const file = path.join(dir, 'cut.vma');
  const parts: Buffer[] = [];
  for await (const b of writeVma(header, clusters())) parts.push(b);
  fs.writeFileSync(file, Buffer.concat(parts).subarray(0, 5 << 20));
  await expect(rebuild(file)).rejects.toThrow(/^'.*cut\.vma': extent at offset \d+: truncated/);
});
