/**
 * Ingest and restore on a real pool (zfs-fuse in CI): a series of generated backups with changing
 * disks and configs, every compression, idempotence, rollback after corrupt, truncated and killed
 * ingests, locking, and the rebuilt VMA compared byte for byte with what went in.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { compress, decompress } from '../../src/archive/compression';
import type { Compression } from '../../src/archive/names';
import { ingestArchive, ingestTarget } from '../../src/ingest/ingest';
import { DiskSync, diskImageName } from '../../src/ingest/disk-sync';
import { restoreBackup } from '../../src/restore/restore';
import { verifyBackup, verifyBackupDir } from '../../src/restore/verify';
import { BackupStore } from '../../src/store/store';
import { expandCluster, readVma } from '../../src/vma/reader';
import { writeVma } from '../../src/vma/writer';
import type { VmaClusterData } from '../../src/vma/types';
import { clonesLeft, createTestPool, describeZfs, type TestPool } from '../helpers/zpool';

const C = 65536;

interface Guest {
  configs: { name: string; data: Buffer }[];
  disks: { name: string; data: Buffer }[];
}

function* clustersOf(disks: Guest['disks'], order: 'seq' | 'interleaved'): Generator<VmaClusterData> {
  const all: VmaClusterData[] = [];
  disks.forEach((d, i) => {
    for (let c = 0; c * C < d.data.length; c++) all.push({ devId: i + 1, cluster: c, data: d.data.subarray(c * C, Math.min((c + 1) * C, d.data.length)) });
  });
  if (order === 'interleaved') all.sort((a, b) => ((a.cluster * 7919 + a.devId) % 13) - ((b.cluster * 7919 + b.devId) % 13));
  yield* all;
}

async function writeArchive(dir: string, name: string, g: Guest, compression: Compression = 'zst'): Promise<string> {
  const p = path.join(dir, name);
  const vma = writeVma(
    { uuid: randomBytes(16), ctime: 1767225600, configs: g.configs, devices: g.disks.map((d) => ({ name: d.name, size: d.data.length })) },
    clustersOf(g.disks, 'interleaved'),
  );
  const stream = compression === 'none' ? vma : compress(vma, compression);
  await pipeline(Readable.from(stream), fs.createWriteStream(p));
  return p;
}

/** Reads a VMA (file, compressed by extension) back into configs and full disk images. */
async function readBack(file: string, compression: Compression): Promise<Guest> {
  const g: Guest = { configs: [], disks: [] };
  for await (const rec of readVma(decompress(fs.createReadStream(file), compression), { label: file })) {
    if (rec.type === 'header') {
      g.configs = rec.header.configs.map((c) => ({ name: c.name, data: c.data }));
      g.disks = rec.header.devices.map((d) => ({ name: d.name, data: Buffer.alloc(d.size) }));
    } else {
      const d = g.disks[rec.devId - 1]!;
      const full = expandCluster(rec);
      if (rec.cluster * C < d.data.length) full.subarray(0, Math.min(C, d.data.length - rec.cluster * C)).copy(d.data, rec.cluster * C);
    }
  }
  return g;
}

function expectSameGuest(got: Guest, want: Guest): void {
  expect(got.configs.map((c) => c.name)).toEqual(want.configs.map((c) => c.name));
  got.configs.forEach((c, i) => expect(c.data.equals(want.configs[i]!.data)).toBe(true));
  expect(got.disks.map((d) => [d.name, d.data.length])).toEqual(want.disks.map((d) => [d.name, d.data.length]));
  got.disks.forEach((d, i) => expect(d.data.equals(want.disks[i]!.data)).toBe(true));
}

function disk(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  // data in two thirds of the 4 KiB blocks, the rest zero
  for (let off = 0, i = seed; off < size; off += 4096, i++) if (i % 3 !== 0) randomBytes(Math.min(4096, size - off)).copy(b, off);
  return b;
}

/** 4 KiB blocks in which `b` differs from `a`, both read as zero past their ends. */
function differingBlocks(a: Buffer, b: Buffer): number {
  let n = 0;
  const len = Math.max(a.length, b.length);
  for (let off = 0; off < len; off += 4096) {
    const x = Buffer.alloc(4096);
    const y = Buffer.alloc(4096);
    a.copy(x, 0, Math.min(off, a.length), Math.min(off + 4096, a.length));
    b.copy(y, 0, Math.min(off, b.length), Math.min(off + 4096, b.length));
    if (!x.equals(y)) n++;
  }
  return n;
}

/**
 * What a sync at recordsize >= 64 KiB writes going from image `a` to `b`: each 64 KiB cluster that
 * differs is written whole (its blocks up to the disk end), except where the old cluster was all
 * zero (a hole, or past the old end), where only the blocks that differ are.
 */
function wholeClusterWrites(a: Buffer, b: Buffer): { clusters: number; blocks: number } {
  const C = 65536;
  let clusters = 0;
  let blocks = 0;
  for (let off = 0; off < b.length; off += C) {
    const x = Buffer.alloc(C);
    const y = Buffer.alloc(C);
    a.copy(x, 0, Math.min(off, a.length), Math.min(off + C, a.length));
    b.copy(y, 0, off, Math.min(off + C, b.length));
    if (x.equals(y)) continue;
    clusters++;
    const inDisk = Math.ceil((Math.min(off + C, b.length) - off) / 4096);
    blocks += x.equals(Buffer.alloc(C)) ? differingBlocks(x.subarray(0, inDisk * 4096), y.subarray(0, inDisk * 4096)) : inDisk;
  }
  return { clusters, blocks };
}

function conf(text: string): { name: string; data: Buffer } {
  return { name: 'qemu-server.conf', data: Buffer.from(`${text}\n#qmdump#map:scsi0:drive-scsi0:local-zfs:raw:\n`) };
}

const name = (vmid: number, day: number, ext = 'vma.zst') => `vzdump-qemu-${vmid}-2026_01_${String(day).padStart(2, '0')}-02_00_00.${ext}`;

describe('ingestTarget', () => {
  it.each([
    ['vzdump-qemu-101-2026_01_02-03_04_05.vma.zst', 101, '2026_01_02-03_04_05'],
    ['/some/dir/vzdump-qemu-999999999-2026_01_02-03_04_05.vma', 999999999, '2026_01_02-03_04_05'],
  ])('reads guest and time from %s', (file, vmid, ts) => {
    expect(ingestTarget(file)).toMatchObject({ vmid, timestamp: ts });
  });

  it.each([
    ['vzdump-lxc-101-2026_01_02-03_04_05.tar.zst', /container|lxc/],
    ['backup.vma.zst', /--vmid and --time/],
    ['vzdump-qemu-101-2026_01_02-03_04_05.vma.bz2', /bz2|compression/],
    ['vzdump-qemu-101-2026_01_02-03_04_05.vma.dat', /./],
  ])('rejects %s with a message naming the file', (file, re) => {
    let msg = '';
    try {
      ingestTarget(file);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(re);
    expect(msg).toContain(file);
  });

  it('rejects a guest id outside 100..999999999 given with --vmid', () => {
    for (const vmid of [99, 1000000000, 100.5]) {
      expect(() => ingestTarget('nightly.vma', { vmid, timestamp: '2026_01_02-03_04_05' })).toThrow(`'nightly.vma': guest id ${vmid} is outside 100..999999999`);
    }
  });

  it('accepts other names with --vmid and --time, but only VMA extensions', () => {
    expect(ingestTarget('nightly.vma.gz', { vmid: 120, timestamp: '2026_01_02-03_04_05' })).toMatchObject({ vmid: 120, vzdumpName: false });
    expect(() => ingestTarget('nightly.tar.gz', { vmid: 120, timestamp: '2026_01_02-03_04_05' })).toThrow(/VMA/);
    expect(() => ingestTarget('nightly.vma', { vmid: 120, timestamp: '2026-01-02' })).toThrow(/YYYY_MM_DD-HH_MM_SS/);
  });
});

describeZfs('ingest and restore on a real pool', () => {
  let tp: TestPool;
  let store: BackupStore;
  let work: string;

  beforeAll(async () => {
    tp = await createTestPool({ sizeBytes: 512 * 1024 * 1024 });
    await tp.zfs.create(tp.root);
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'vz-ingest-'));
    store = new BackupStore(tp.zfs, tp.root, { lockDir: path.join(work, 'locks') });
  });
  afterAll(async () => {
    await tp?.destroy();
    fs.rmSync(work, { recursive: true, force: true });
  });

  const day1: Guest = {
    configs: [conf('memory: 2048')],
    disks: [
      { name: 'drive-scsi0', data: disk(20 * C + 3 * 4096 + 512, 1) },
      { name: 'drive-efidisk0', data: disk(540672, 2) },
    ],
  };

  it('stores a series: changed blocks, grown and shrunk disks, disks and configs added and removed', async () => {
    const vmid = 101;
    // day 2: some blocks changed, disk grown, firewall config added
    const d2scsi = Buffer.concat([day1.disks[0]!.data, disk(3 * C, 5)]);
    randomBytes(4096).copy(d2scsi, 4 * C);
    d2scsi.fill(0, 9 * C, 9 * C + 8192);
    const day2: Guest = {
      configs: [conf('memory: 4096'), { name: 'qemu-server.fw', data: Buffer.from('[OPTIONS]\nenable: 1\n') }],
      disks: [{ name: 'drive-scsi0', data: d2scsi }, day1.disks[1]!],
    };
    // day 3: efidisk removed, a new disk added, scsi0 shrunk, firewall config gone
    const day3: Guest = {
      configs: [conf('memory: 4096\nscsi1: local-zfs:vm-101-disk-2,size=1M')],
      disks: [{ name: 'drive-scsi0', data: d2scsi.subarray(0, 12 * C) }, { name: 'drive-scsi1', data: disk(1 << 20, 9) }],
    };
    const exts: Array<[Guest, Compression, string]> = [
      [day1, 'zst', 'vma.zst'],
      [day2, 'lzo', 'vma.lzo'],
      [day3, 'gz', 'vma.gz'],
    ];
    const stats = [];
    for (const [i, [g, c, ext]] of exts.entries()) {
      const p = await writeArchive(work, name(vmid, i + 1, ext), g, c);
      const r = await ingestArchive(store, { archive: p, timeZone: 'UTC' });
      expect(r.status).toBe('stored');
      stats.push(r.stats!);
    }
    // day 2 (recordsize 64K) wrote the clusters that differ from day 1 whole, unread, and of the
    // grown part (zeros before) only the non-zero blocks
    const w = wholeClusterWrites(day1.disks[0]!.data, d2scsi);
    expect(stats[1]).toMatchObject({ clustersWritten: w.clusters, blocksWritten: w.blocks, clustersCompared: 0 });
    expect(stats[1]!.clustersRewritten).toBeGreaterThan(0);
    expect(stats[1]!.clustersUnchanged).toBeGreaterThan(15);

    const list = await store.list(vmid);
    expect(list.map((b) => b.timestamp)).toEqual(['2026_01_01-02_00_00', '2026_01_02-02_00_00', '2026_01_03-02_00_00']);
    expect(list[0]!.archive).toBe(name(vmid, 1, 'vma.zst'));
    expect(list[0]!.ctime).toBe(Date.UTC(2026, 0, 1, 2, 0, 0) / 1000);
    expect(list[1]!.size).toBe(fs.statSync(path.join(work, name(vmid, 2, 'vma.lzo'))).size);

    // every backup restores to exactly what went in, in every output compression
    const outs: Array<[Compression, string]> = [
      ['none', 'vma'],
      ['zst', 'vma.zst'],
      ['gz', 'vma.gz'],
    ];
    for (const [i, g] of [day1, day2, day3].entries()) {
      const [c, ext] = outs[i]!;
      const out = path.join(work, `restored-${i}.${ext}`);
      await restoreBackup(store, { vmid, timestamp: list[i]!.timestamp, output: out, compression: c });
      expectSameGuest(await readBack(out, c), g);
      await verifyBackup(store, vmid, list[i]!.timestamp);
    }
    // removed files are gone from the live dataset
    const live = fs.readdirSync(path.join(tp.mountRoot, path.basename(tp.root), String(vmid))).sort();
    expect(live).toEqual(['disk-drive-scsi0.raw', 'disk-drive-scsi0.b3', 'disk-drive-scsi1.raw', 'disk-drive-scsi1.b3', 'qemu-server.conf', 'vzdump-zfs.json'].sort());
  });

  it('is idempotent: the same archive twice gives one backup', async () => {
    const p = await writeArchive(work, name(102, 1), day1);
    expect((await ingestArchive(store, { archive: p, timeZone: 'UTC' })).status).toBe('stored');
    const again = await ingestArchive(store, { archive: p, timeZone: 'UTC' });
    expect(again.status).toBe('already-stored');
    expect(await store.list(102)).toHaveLength(1);
    // another archive of the same guest and time (here: another compression) is not the stored one
    const other = await writeArchive(work, name(102, 1, 'vma.gz'), day1, 'gz');
    await expect(ingestArchive(store, { archive: other, timeZone: 'UTC' })).rejects.toThrow(
      new RegExp(`^'${name(102, 1, 'vma.gz').replace(/\./g, '\\.')}' \\(\\d+ bytes\\): backup 102/2026_01_01-02_00_00 is already stored from another archive \\('${name(102, 1).replace(/\./g, '\\.')}', \\d+ bytes\\) - forget that backup first`),
    );
    expect((await store.list(102)).map((b) => b.archive)).toEqual([name(102, 1)]);
  });

  it('keeps .log, notes and protection from the side files', async () => {
    const p = await writeArchive(work, name(103, 1), day1);
    fs.writeFileSync(path.join(work, name(103, 1).replace('.vma.zst', '.log')), '2026-01-01 02:00:00 INFO: Starting Backup of VM 103 (qemu)\n');
    fs.writeFileSync(`${p}.notes`, 'before the upgrade\nsecond line ü\n');
    fs.writeFileSync(`${p}.protected`, '');
    const r = await ingestArchive(store, { archive: p, timeZone: 'UTC' });
    expect(r.backup.notes).toBe('before the upgrade\nsecond line ü');
    expect(r.backup.protected).toBe(true);
    const view = await store.openSnapshot(103, r.backup.timestamp);
    try {
      expect(fs.readFileSync(path.join(view.dir, 'vzdump.log'), 'utf8')).toContain('Starting Backup of VM 103');
    } finally {
      await view.release();
    }
  });

  it('stores notes too long for a ZFS property whole as a file, shows what fits, and says so', async () => {
    const vmid = 116;
    const p = await writeArchive(work, name(vmid, 1), day1);
    const notes = `${'Größe € '.repeat(700)}\nlast line`; // 5,600+ characters, ~15,000 bytes encoded
    fs.writeFileSync(`${p}.notes`, notes);
    const warnings: string[] = [];
    const r = await ingestArchive(store, { archive: p, timeZone: 'UTC', onWarning: (m) => warnings.push(m) });
    expect(r.status).toBe('stored');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(new RegExp(`^notes of '${name(vmid, 1).replace(/\./g, '\\.')}' are too long for a ZFS property: the backup's notes show their first \\d+ of ${Array.from(notes).length} characters`));
    expect(r.backup.notes.length).toBeGreaterThan(1000);
    expect(notes.startsWith(r.backup.notes)).toBe(true);
    const view = await store.openSnapshot(vmid, r.backup.timestamp);
    try {
      expect(fs.readFileSync(path.join(view.dir, 'vzdump.notes'), 'utf8')).toBe(notes);
      expect(JSON.parse(fs.readFileSync(path.join(view.dir, 'vzdump-zfs.json'), 'utf8')).notes).toBe('vzdump.notes');
    } finally {
      await view.release();
    }
  });

  async function liveImage(vmid: number, dev: string): Promise<Buffer> {
    return fs.readFileSync(path.join(tp.mountRoot, path.basename(tp.root), String(vmid), diskImageName(dev)));
  }

  it('rolls back to the last backup when an archive is corrupt halfway', async () => {
    const vmid = 104;
    await ingestArchive(store, { archive: await writeArchive(work, name(vmid, 1, 'vma'), day1, 'none'), timeZone: 'UTC' });
    const changed: Guest = { configs: [conf('memory: 1')], disks: [{ name: 'drive-scsi0', data: disk(day1.disks[0]!.data.length, 77) }, day1.disks[1]!] };
    const p = await writeArchive(work, name(vmid, 2, 'vma'), changed, 'none');
    const bytes = fs.readFileSync(p);
    // break the MD5 of the last extent header, after many clusters were already applied
    const lastExtent = bytes.lastIndexOf(Buffer.from('VMAE'));
    bytes[lastExtent + 30]! ^= 0xff;
    fs.writeFileSync(p, bytes);
    await expect(ingestArchive(store, { archive: p, timeZone: 'UTC' })).rejects.toMatchObject({ code: 'VZ_ERR_VMA_FORMAT' });
    expect((await store.list(vmid)).map((b) => b.timestamp)).toEqual(['2026_01_01-02_00_00']);
    expect((await liveImage(vmid, 'drive-scsi0')).equals(day1.disks[0]!.data)).toBe(true);
    expect((await tp.zfs.get(store.guestDataset(vmid), ['vzdump-zfs:dirty']))['vzdump-zfs:dirty']).toBe('-');
  });

  it('rolls back when a compressed archive is truncated', async () => {
    const vmid = 105;
    await ingestArchive(store, { archive: await writeArchive(work, name(vmid, 1), day1), timeZone: 'UTC' });
    const p = await writeArchive(work, name(vmid, 2), { ...day1, disks: [{ name: 'drive-scsi0', data: disk(day1.disks[0]!.data.length, 55) }, day1.disks[1]!] });
    fs.truncateSync(p, Math.floor(fs.statSync(p).size * 0.7));
    await expect(ingestArchive(store, { archive: p, timeZone: 'UTC' })).rejects.toThrow(new RegExp(name(vmid, 2).replace(/\./g, '\\.')));
    expect(await store.list(vmid)).toHaveLength(1);
    expect((await liveImage(vmid, 'drive-scsi0')).equals(day1.disks[0]!.data)).toBe(true);
  });

  it('destroys the guest dataset when the first ingest of a guest fails', async () => {
    const p = await writeArchive(work, name(106, 1, 'vma'), day1, 'none');
    fs.truncateSync(p, fs.statSync(p).size - 4096);
    await expect(ingestArchive(store, { archive: p, timeZone: 'UTC' })).rejects.toMatchObject({ code: 'VZ_ERR_VMA_FORMAT' });
    expect(await tp.zfs.exists(store.guestDataset(106))).toBe(false);
  });

  it('after every backup of a guest was forgotten, a failed ingest leaves no half-written base for the next one', async () => {
    const vmid = 115;
    await ingestArchive(store, { archive: await writeArchive(work, name(vmid, 1, 'vma'), day1, 'none'), timeZone: 'UTC' });
    await store.forget(vmid, '2026_01_01-02_00_00');
    // day 2 rewrites every cluster, then fails at its last extent, after most were written
    const changed: Guest = { configs: day1.configs, disks: [{ name: 'drive-scsi0', data: disk(day1.disks[0]!.data.length, 78) }, day1.disks[1]!] };
    const p = await writeArchive(work, name(vmid, 2, 'vma'), changed, 'none');
    const bytes = fs.readFileSync(p);
    bytes[bytes.lastIndexOf(Buffer.from('VMAE')) + 30]! ^= 0xff;
    fs.writeFileSync(p, bytes);
    await expect(ingestArchive(store, { archive: p, timeZone: 'UTC' })).rejects.toMatchObject({ code: 'VZ_ERR_VMA_FORMAT' });
    // day 3 holds day 1's disks again: none of day 2's bytes may survive in it
    const r = await ingestArchive(store, { archive: await writeArchive(work, name(vmid, 3, 'vma'), day1, 'none'), timeZone: 'UTC' });
    expect(r.status).toBe('stored');
    expect((await liveImage(vmid, 'drive-scsi0')).equals(day1.disks[0]!.data)).toBe(true);
    const out = path.join(work, `restored-${vmid}.vma`);
    await restoreBackup(store, { vmid, timestamp: '2026_01_03-02_00_00', output: out, compression: 'none' });
    expectSameGuest(await readBack(out, 'none'), day1);
  });

  it('rejects config and device names that would leave the guest dataset, touching nothing', async () => {
    const vmid = 112;
    await ingestArchive(store, { archive: await writeArchive(work, name(vmid, 1), day1), timeZone: 'UTC' });
    const evil: Array<[string, Guest]> = [
      ['config', { configs: [{ name: '../../escape.conf', data: Buffer.from('x') }], disks: day1.disks }],
      ['device', { configs: day1.configs, disks: [{ name: '../drive-scsi0', data: disk(65536, 1) }] }],
      ['reserved', { configs: [{ name: 'vzdump-zfs.json', data: Buffer.from('{}') }], disks: day1.disks }],
    ];
    for (const [i, [, g]] of evil.entries()) {
      const p = await writeArchive(work, name(vmid, 2 + i), g);
      await expect(ingestArchive(store, { archive: p, timeZone: 'UTC' })).rejects.toMatchObject({ code: 'VZ_ERR_UNSAFE_NAME' });
    }
    expect(fs.existsSync(path.join(tp.mountRoot, path.basename(tp.root), 'escape.conf'))).toBe(false);
    expect(await store.list(vmid)).toHaveLength(1);
    expect((await liveImage(vmid, 'drive-scsi0')).equals(day1.disks[0]!.data)).toBe(true);
  });

  it('refuses an archive with a vmstate (RAM) stream, keeping the last backup', async () => {
    const vmid = 113;
    await ingestArchive(store, { archive: await writeArchive(work, name(vmid, 1), day1), timeZone: 'UTC' });
    const withRam: Guest = { configs: day1.configs, disks: [...day1.disks, { name: 'vmstate', data: disk(65536, 3) }] };
    const p = await writeArchive(work, name(vmid, 2), withRam);
    await expect(ingestArchive(store, { archive: p, timeZone: 'UTC' })).rejects.toThrow(
      `'${path.basename(p)}' holds a vmstate (RAM) stream, which vzdump-zfs does not store`,
    );
    expect((await store.list(vmid)).map((b) => b.timestamp)).toEqual(['2026_01_01-02_00_00']);
    expect((await liveImage(vmid, 'drive-scsi0')).equals(day1.disks[0]!.data)).toBe(true);
  });

  it('a missing archive is an IoError naming it, and creates no guest dataset', async () => {
    const p = path.join(work, name(114, 1));
    const err = await ingestArchive(store, { archive: p, timeZone: 'UTC' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'VZ_ERR_IO' });
    expect((err as Error).message).toMatch(new RegExp(`^cannot read archive '${p}': ENOENT`));
    expect(await tp.zfs.exists(store.guestDataset(114))).toBe(false);
  });

  it('refuses a second ingest of the same guest while one runs, but not of another guest', async () => {
    const b = await writeArchive(work, name(107, 2, 'vma'), day1, 'none');
    const other = await writeArchive(work, name(108, 1, 'vma'), day1, 'none');
    const running = await store.beginWrite(107); // what a running ingest holds
    try {
      await expect(ingestArchive(store, { archive: b, timeZone: 'UTC' })).rejects.toMatchObject({ code: 'VZ_ERR_LOCKED' });
      await expect(ingestArchive(store, { archive: other, timeZone: 'UTC' })).resolves.toMatchObject({ status: 'stored' });
    } finally {
      await running.abort();
    }
    await expect(ingestArchive(store, { archive: b, timeZone: 'UTC' })).resolves.toMatchObject({ status: 'stored' });
  });

  it('cleans up after a killed ingest on the next run', async () => {
    const vmid = 109;
    const cli = path.join(__dirname, '..', '..', 'bin', 'vzdump-zfs');
    expect(fs.existsSync(path.join(__dirname, '..', '..', 'dist', 'cli.js'))).toBe(true);
    await ingestArchive(store, { archive: await writeArchive(work, name(vmid, 1), day1), timeZone: 'UTC' });
    const big: Guest = { configs: [conf('memory: 3')], disks: [{ name: 'drive-scsi0', data: disk(64 << 20, 11) }] };
    const p = await writeArchive(work, name(vmid, 2, 'vma'), big, 'none');
    const child = spawn(process.execPath, [cli, 'ingest', p, '--dataset', tp.root, '--tz', 'UTC'], {
      env: { ...process.env, VZDUMP_ZFS_CONFIG: path.join(work, 'cfg.yaml') },
      stdio: 'ignore',
    });
    fs.writeFileSync(path.join(work, 'cfg.yaml'), `store:\n  lockDir: ${path.join(work, 'locks')}\n`);
    // kill it once it has marked the dataset dirty and started writing
    const ds = store.guestDataset(vmid);
    for (let i = 0; i < 200; i++) {
      const dirty = (await tp.zfs.get(ds, ['vzdump-zfs:dirty']))['vzdump-zfs:dirty'];
      if (dirty !== '-') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 200));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    // the next ingest recovers: the guest is back at day 1, then day 3 is stored on top
    const day3 = await writeArchive(work, name(vmid, 3), day1);
    const r = await ingestArchive(store, { archive: day3, timeZone: 'UTC' });
    expect(r.status).toBe('stored');
    expect((await store.list(vmid)).map((b) => b.timestamp)).toEqual(['2026_01_01-02_00_00', '2026_01_03-02_00_00']);
    expect(r.stats!.clustersUnchanged).toBe(r.stats!.clusters);
    expect((await liveImage(vmid, 'drive-scsi0')).equals(day1.disks[0]!.data)).toBe(true);
  });

  it('rolls back when the pool runs full, and the next ingest succeeds', async () => {
    // a pool of its own, small enough to fill: 128 MiB, with a first backup of 40 MiB random data
    const small = await createTestPool({ sizeBytes: 128 * 1024 * 1024, rootName: 'full' });
    try {
      await small.zfs.create(small.root);
      const s = new BackupStore(small.zfs, small.root, { lockDir: path.join(work, 'locks-full') });
      const first: Guest = { configs: [conf('memory: 5')], disks: [{ name: 'drive-scsi0', data: randomBytes(40 << 20) }] };
      await ingestArchive(s, { archive: await writeArchive(work, name(113, 1, 'vma'), first, 'none'), timeZone: 'UTC' });
      const huge: Guest = { configs: [conf('memory: 6')], disks: [{ name: 'drive-scsi0', data: randomBytes(160 << 20) }] };
      const p = await writeArchive(work, name(113, 2, 'vma'), huge, 'none');
      await expect(ingestArchive(s, { archive: p, timeZone: 'UTC' })).rejects.toMatchObject({ code: 'VZ_ERR_IO', message: expect.stringMatching(/ENOSPC/) });
      fs.rmSync(p);
      expect((await s.list(113)).map((b) => b.timestamp)).toEqual(['2026_01_01-02_00_00']);
      const live = fs.readFileSync(path.join(small.mountRoot, 'full', '113', diskImageName('drive-scsi0')));
      expect(live.equals(first.disks[0]!.data)).toBe(true);
      // space is back: a small change ingests fine
      const next = Buffer.from(first.disks[0]!.data);
      randomBytes(4096).copy(next, 4096);
      const r = await ingestArchive(s, { archive: await writeArchive(work, name(113, 3, 'vma'), { ...first, disks: [{ name: 'drive-scsi0', data: next }] }, 'none'), timeZone: 'UTC' });
      expect(r.stats).toMatchObject({ clustersWritten: 1, blocksWritten: 16 });
    } finally {
      await small.destroy();
    }
  });

  it('restore skips the chunks the digests record as zero and still rebuilds the same disks', async () => {
    const vmid = 117;
    // three 4 MiB chunks: data in the first and near the end of the last, the middle one all zero
    const thin = Buffer.alloc(12 << 20);
    randomBytes(1 << 20).copy(thin, 0);
    randomBytes(4096).copy(thin, (12 << 20) - 8192);
    const g: Guest = { configs: [conf('memory: 1')], disks: [{ name: 'drive-scsi0', data: thin }, { name: 'drive-efidisk0', data: Buffer.alloc(540672) }] };
    await ingestArchive(store, { archive: await writeArchive(work, name(vmid, 1, 'vma'), g, 'none'), timeZone: 'UTC' });
    const out = path.join(work, 'restored-thin.vma');
    await restoreBackup(store, { vmid, timestamp: '2026_01_01-02_00_00', output: out, compression: 'none' });
    expectSameGuest(await readBack(out, 'none'), g);
    expect(await clonesLeft(tp.zfs, tp.root)).toEqual([]);
  });

  it('at recordsize 16K writes only the 4 KiB blocks that differ, read from the old image, also after recordsize is raised', async () => {
    const s16 = new BackupStore(tp.zfs, `${tp.root}/rs16k`, { lockDir: path.join(work, 'locks-16k'), recordsize: '16K' });
    await tp.zfs.create(`${tp.root}/rs16k`);
    const vmid = 116;
    await ingestArchive(s16, { archive: await writeArchive(work, name(vmid, 1, 'vma'), day1, 'none'), timeZone: 'UTC' });
    const next = Buffer.from(day1.disks[0]!.data);
    randomBytes(4096).copy(next, 4 * C + 4096);
    next.fill(0, 9 * C, 9 * C + 8192);
    randomBytes(100).copy(next, 17 * C);
    const day2: Guest = { configs: day1.configs, disks: [{ name: 'drive-scsi0', data: next }, day1.disks[1]!] };
    const r = await ingestArchive(s16, { archive: await writeArchive(work, name(vmid, 2, 'vma'), day2, 'none'), timeZone: 'UTC' });
    expect(r.stats).toMatchObject({ clustersWritten: 3, clustersCompared: 3, clustersRewritten: 0, blocksWritten: differingBlocks(day1.disks[0]!.data, next) });
    expect(r.stats!.blocksWritten).toBe(4);
    const imgPath = path.join(tp.mountRoot, path.basename(tp.root), 'rs16k', String(vmid), diskImageName('drive-scsi0'));
    expect(fs.readFileSync(imgPath).equals(next)).toBe(true);
    // a recordsize set later changes new files only: the image keeps its 16K blocks, so ingest
    // goes by the file's own block size and still compares
    await tp.zfs.set(`${tp.root}/rs16k/${vmid}`, { recordsize: '128K' });
    expect(fs.statSync(imgPath).blksize).toBe(16384);
    const day3img = Buffer.from(next);
    randomBytes(4096).copy(day3img, 2 * C);
    const day3: Guest = { configs: day1.configs, disks: [{ name: 'drive-scsi0', data: day3img }, day1.disks[1]!] };
    const r3 = await ingestArchive(s16, { archive: await writeArchive(work, name(vmid, 3, 'vma'), day3, 'none'), timeZone: 'UTC' });
    expect(r3.stats).toMatchObject({ clustersWritten: 1, clustersCompared: 1, clustersRewritten: 0, blocksWritten: 1 });
    expect(fs.readFileSync(imgPath).equals(day3img)).toBe(true);
  });

  it('at recordsize 64K a changed cluster written whole costs the snapshot no more than its changed blocks would', async () => {
    // the same two days synced by DiskSync into two 64K datasets, one comparing block by block
    // (told the records were 4 KiB), one writing changed clusters whole (as the files' own 64 KiB
    // block size says): the zfs send -i sizes are equal
    const day1img = disk(64 * C, 21);
    const day2img = Buffer.from(day1img);
    for (let c = 0; c < 64; c += 3) randomBytes(4096).copy(day2img, c * C + ((c * 5) % 16) * 4096); // one block in every third cluster
    const sizes: number[] = [];
    for (const [ds, recordSize] of [['cmp-blocks', 4096], ['cmp-whole', undefined]] as const) {
      const full = `${tp.root}/${ds}`;
      await tp.zfs.create(full, { recordsize: '64K', compression: 'on' });
      const dir = path.join(tp.mountRoot, path.basename(tp.root), ds);
      for (const [i, img] of [day1img, day2img].entries()) {
        const sync = new DiskSync(dir, 'drive-scsi0', img.length, { recordSize });
        const vma = writeVma({ uuid: randomBytes(16), ctime: 0, configs: [], devices: [{ name: 'drive-scsi0', size: img.length }] }, clustersOf([{ name: 'drive-scsi0', data: img }], 'seq'));
        for await (const rec of readVma(vma, { label: ds })) {
          if (rec.type === 'header') continue;
          sync.apply(rec);
          if (sync.busy) await sync.ready();
        }
        const st = await sync.close();
        if (i === 1) expect(st).toMatchObject(recordSize ? { rewritten: 0, compared: 22 } : { rewritten: 22, compared: 0 });
        await tp.zfs.snapshot(`${full}@d${i + 1}`);
      }
      expect(fs.readFileSync(path.join(dir, diskImageName('drive-scsi0'))).equals(day2img)).toBe(true);
      sizes.push(await tp.zfs.sendSize(`${full}@d1`, `${full}@d2`));
    }
    expect(sizes[1]).toBe(sizes[0]);
  });

  it('verify detects a disk block that no longer matches its digest', async () => {
    const vmid = 110;
    const r = await ingestArchive(store, { archive: await writeArchive(work, name(vmid, 1), day1), timeZone: 'UTC' });
    const clone = `${tp.pool}/verifyclone`;
    await tp.zfs.clone(r.backup.snapshot, clone);
    const dir = path.join(tp.mountRoot, 'verifyclone');
    try {
      await expect(verifyBackupDir(dir, 'clone')).resolves.toMatchObject({ disks: 2, configs: 1 });
      const img = path.join(dir, diskImageName('drive-scsi0'));
      const fd = fs.openSync(img, 'r+');
      fs.writeSync(fd, Buffer.from([0x42]), 0, 1, 7 * C + 100);
      fs.closeSync(fd);
      await expect(verifyBackupDir(dir, 'clone')).rejects.toThrow(/cluster 7 /);
    } finally {
      await tp.zfs.unmount(clone).catch(() => undefined);
      await tp.zfs.destroy(clone);
    }
  });

  it('restore refuses an existing output file and an unknown backup, creating nothing', async () => {
    const vmid = 111;
    const r = await ingestArchive(store, { archive: await writeArchive(work, name(vmid, 1), day1), timeZone: 'UTC' });
    const out = path.join(work, 'exists.vma');
    fs.writeFileSync(out, 'keep me');
    await expect(restoreBackup(store, { vmid, timestamp: r.backup.timestamp, output: out, compression: 'none' })).rejects.toMatchObject({ code: 'VZ_ERR_CONFLICT' });
    const dangling = path.join(work, 'dangling.vma');
    fs.symlinkSync(path.join(work, 'nowhere'), dangling);
    await expect(restoreBackup(store, { vmid, timestamp: r.backup.timestamp, output: dangling, compression: 'none' })).rejects.toMatchObject({ code: 'VZ_ERR_CONFLICT' });
    expect(fs.existsSync(path.join(work, 'nowhere'))).toBe(false);
    expect(fs.readFileSync(out, 'utf8')).toBe('keep me');
    expect(fs.readdirSync(work).filter((f) => f.includes('.partial-'))).toEqual([]);
    const missing = path.join(work, 'missing.vma');
    await expect(restoreBackup(store, { vmid, timestamp: '2020_01_01-00_00_00', output: missing, compression: 'none' })).rejects.toMatchObject({ code: 'VZ_ERR_NOT_FOUND' });
    expect(fs.existsSync(missing)).toBe(false);
  });

  it('a stopped ingest fails as stopped and leaves the guest at its last backup, also when stopped after the data pass', async () => {
    const vmid = 131;
    const first = await writeArchive(work, name(vmid, 1, 'vma.zst'), day1);
    await ingestArchive(store, { archive: first, timeZone: 'UTC' });
    const before = await store.list(vmid);
    const day2: Guest = { configs: [conf('memory: 8192')], disks: [{ name: 'drive-scsi0', data: disk(40 * C, 7) }] };
    const second = await writeArchive(work, name(vmid, 2, 'vma.zst'), day2);
    // stopped as soon as it started: whatever it was doing fails, the guest rolls back
    const early = new AbortController();
    const during = ingestArchive(store, { archive: second, timeZone: 'UTC', signal: early.signal });
    setImmediate(() => early.abort());
    await expect(during).rejects.toThrow(`ingest of '${name(vmid, 2, 'vma.zst')}' was stopped`);
    // after the data pass (its last progress report), before the snapshot
    const late = new AbortController();
    const after = ingestArchive(store, {
      archive: second,
      timeZone: 'UTC',
      signal: late.signal,
      onProgress: (p) => {
        if (p.clusters === p.totalClusters) late.abort();
      },
    });
    await expect(after).rejects.toThrow(`ingest of '${name(vmid, 2, 'vma.zst')}' was stopped`);
    expect(await store.list(vmid)).toEqual(before);
    expect(await liveImage(vmid, 'drive-scsi0')).toEqual(day1.disks[0]!.data);
    // and the archive goes in once nothing stops it
    await expect(ingestArchive(store, { archive: second, timeZone: 'UTC' })).resolves.toMatchObject({ status: 'stored' });
  });

  it('an unreadable side file fails the ingest before it writes anything', async () => {
    const vmid = 132;
    const p = await writeArchive(work, name(vmid, 1, 'vma.zst'), day1);
    fs.mkdirSync(`${p}.notes`); // PVE's notes file, but a directory
    const begin = jest.spyOn(store, 'beginWrite');
    try {
      await expect(ingestArchive(store, { archive: p, timeZone: 'UTC' })).rejects.toThrow(`'${p}.notes': cannot read - EISDIR`);
      expect(begin).not.toHaveBeenCalled();
    } finally {
      begin.mockRestore();
      fs.rmdirSync(`${p}.notes`);
    }
    expect(await tp.zfs.exists(store.guestDataset(vmid))).toBe(false);
  });

  it('a stopped restore leaves neither the output nor a partial file, and releases the snapshot', async () => {
    const vmid = 111;
    const ts = (await store.list(vmid))[0]!.timestamp;
    const out = path.join(work, 'stopped.vma.zst');
    const ac = new AbortController();
    const p = restoreBackup(store, { vmid, timestamp: ts, output: out, compression: 'zst', signal: ac.signal });
    ac.abort();
    await expect(p).rejects.toThrow(`restore of backup ${vmid}/${ts} was stopped`);
    expect(fs.readdirSync(work).filter((f) => f.startsWith('stopped.'))).toEqual([]);
    expect(await clonesLeft(tp.zfs, tp.root)).toEqual([]);
  });

  it('a stopped verify fails as stopped and releases the snapshot', async () => {
    const vmid = 111;
    const ts = (await store.list(vmid))[0]!.timestamp;
    const ac = new AbortController();
    ac.abort();
    await expect(verifyBackup(store, vmid, ts, { signal: ac.signal })).rejects.toThrow(`verify of backup ${vmid}/${ts} was stopped`);
    expect(await clonesLeft(tp.zfs, tp.root)).toEqual([]);
    await expect(verifyBackup(store, vmid, ts)).resolves.toMatchObject({ disks: 2 });
  });

  it('restore names the output only when complete, and never over a file that appeared meanwhile', async () => {
    const vmid = 111;
    const ts = (await store.list(vmid))[0]!.timestamp;
    const out = path.join(work, 'raced.vma');
    const p = restoreBackup(store, { vmid, timestamp: ts, output: out, compression: 'none' });
    fs.writeFileSync(out, 'written by someone else'); // after the restore checked the name
    await expect(p).rejects.toThrow(`cannot create '${out}': file exists (created while the restore ran)`);
    expect(fs.readFileSync(out, 'utf8')).toBe('written by someone else');
    expect(fs.readdirSync(work).filter((f) => f.startsWith('raced.vma.partial-'))).toEqual([]);
    expect(await clonesLeft(tp.zfs, tp.root)).toEqual([]);
  });
});
