/**
 * The README's main job (src/demo/demo.ts) end to end on a real pool, at a small size: a throwaway
 * file-backed pool, a generated series, every day ingested, the last one restored and compared
 * byte for byte, the table printed, and everything the run created removed afterwards (kept with
 * `keep`, removed also when the run fails).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkRestore, formatDemoTable, runDemo, type DemoOptions, type DemoRow } from '../../src/demo/demo';
import { BackupSeries, EFI_DISK_SIZE, type DayArchive } from '../../src/demo/series';
import { IntegrityError } from '../../src/errors';
import { ingestArchive } from '../../src/ingest/ingest';
import { destroyPool } from '../../src/store/pool';
import { BackupStore } from '../../src/store/store';
import { createTestPool, describeZfs, type TestPool } from '../helpers/zpool';

const DISK = 64 << 20;
/** what runDemo names its throwaway pool */
const DEMO_POOL = `vzdemo${process.pid}`;

function poolExists(name: string): boolean {
  return spawnSync('zpool', ['list', '-H', '-o', 'name', name], { encoding: 'utf8' }).status === 0;
}

function snapshotsOf(dataset: string): string[] {
  const r = spawnSync('zfs', ['list', '-H', '-o', 'name', '-t', 'snapshot', '-r', dataset], { encoding: 'utf8' });
  expect(r.status).toBe(0);
  return r.stdout.split('\n').filter(Boolean);
}

describe('formatDemoTable', () => {
  test('prints each day and the total, with the saving against the archives', () => {
    const row = (day: number, archiveSize: number, delta: number): DemoRow => ({
      day,
      timestamp: `2026_11_0${day}-02_00_00`,
      diskSize: 2 ** 30,
      archiveSize,
      delta,
      ingestSeconds: 1.25,
      blocksWritten: 1,
    });
    const lines = formatDemoTable([row(1, 4000, 4000), row(2, 4000, 100)]).trimEnd().split('\n');
    expect(lines[0]).toMatch(/^day\s+backup time\s+disk size\s+\.vma\.zst\s+snapshot delta\s+saving\s+ingest$/);
    expect(lines.find((l) => l.startsWith('1 '))).toMatch(/2026_11_01-02_00_00 .* 0\.0 % +1\.3 s$/);
    expect(lines.find((l) => l.startsWith('2 '))).toMatch(/ 97\.5 % +1\.3 s$/);
    // 8000 bytes of archives against 4100 bytes of snapshots
    expect(lines[lines.length - 1]).toMatch(/^all .* 48\.8 %$/);
  });
});

describeZfs('demo on a real pool', () => {
  /** what the test passes as --work-dir: the demo makes its own directory inside, and only removes that */
  let parent: string;
  const MARKER = 'was-here-before.txt';

  beforeEach(() => {
    parent = fs.mkdtempSync(path.join(os.tmpdir(), 'vzdump-zfs-demotest-'));
    fs.writeFileSync(path.join(parent, MARKER), 'not the demo\'s\n');
  });

  afterEach(async () => {
    const leftover = fs.readdirSync(parent).find((f) => f.startsWith('vzdump-zfs-demo-'));
    if (poolExists(DEMO_POOL)) await destroyPool(DEMO_POOL, { vdevPath: path.join(parent, leftover ?? 'none', 'pool.img') });
    fs.rmSync(parent, { recursive: true, force: true });
  });

  /** --work-dir holds what it held before, and nothing of the demo's */
  function expectWorkDirAsBefore(): void {
    expect(fs.readdirSync(parent)).toEqual([MARKER]);
  }

  function options(over: Partial<DemoOptions> = {}): DemoOptions & { printed: () => string } {
    const out: string[] = [];
    return {
      workDir: parent,
      days: 3,
      diskSize: DISK,
      changeRate: 0.02,
      keep: false,
      recordsize: '64K',
      log: () => undefined,
      out: (t) => out.push(t),
      printed: () => out.join(''),
      ...over,
    };
  }

  test('ingests every day, restores the last one byte for byte and removes what it created', async () => {
    const o = options();
    const rows = await runDemo(o);

    expect(rows.map((r) => r.day)).toEqual([1, 2, 3]);
    for (const r of rows) {
      expect(r.diskSize).toBe(DISK + EFI_DISK_SIZE);
      expect(r.blocksWritten).toBeGreaterThan(0);
      expect(r.delta).toBeGreaterThan(0);
    }
    // a day after the first costs a small part of the full backup it follows
    for (const r of rows.slice(1)) expect(r.delta * 4).toBeLessThan(rows[0]!.delta);
    expect(o.printed()).toContain(formatDemoTable(rows));
    expect(o.printed()).toMatch(/restore of day 3 rebuilt a VMA whose configs and \S+ \S+ of disk data match the guest byte for byte/);

    expect(poolExists(DEMO_POOL)).toBe(false);
    expectWorkDirAsBefore();
  });

  test('keep leaves the pool, its snapshots and the archives in place', async () => {
    const o = options({ days: 2, keep: true });
    const rows = await runDemo(o);

    expect(poolExists(DEMO_POOL)).toBe(true);
    expect(snapshotsOf(`${DEMO_POOL}/backups/100`).map((s) => s.split('@')[1])).toEqual(rows.map((r) => `vzdump-${r.timestamp}`));
    const own = fs.readdirSync(parent).filter((f) => f !== MARKER);
    expect(own).toHaveLength(1);
    const workDir = path.join(parent, own[0]!);
    const archives = fs.readdirSync(path.join(workDir, 'series')).filter((f) => f.endsWith('.vma.zst'));
    expect(archives.sort()).toEqual(rows.map((r) => `vzdump-qemu-100-${r.timestamp}.vma.zst`));
    expect(o.printed()).toContain(`kept: work directory '${workDir}', store '${DEMO_POOL}/backups'`);
  });

  test('a run that fails halfway still removes the pool and the work directory', async () => {
    // ZFS refuses this recordsize when the first ingest creates the guest dataset, after the pool exists
    const o = options({ recordsize: '3K' });
    await expect(runDemo(o)).rejects.toThrow(/recordsize/);

    expect(o.printed()).toBe('');
    expect(poolExists(DEMO_POOL)).toBe(false);
    expectWorkDirAsBefore();
  });
});

describeZfs('demo into a given store (--dataset)', () => {
  let tp: TestPool;
  let parent: string;

  beforeAll(async () => {
    tp = await createTestPool({ sizeBytes: 768 << 20 });
    await tp.zfs.create(tp.root);
  });
  afterAll(async () => {
    await tp?.destroy();
  });
  beforeEach(() => {
    parent = fs.mkdtempSync(path.join(os.tmpdir(), 'vzdump-zfs-demotest-'));
  });
  afterEach(() => fs.rmSync(parent, { recursive: true, force: true }));

  const options = (over: Partial<DemoOptions> = {}): DemoOptions => ({
    dataset: tp.root,
    workDir: parent,
    days: 2,
    diskSize: DISK,
    changeRate: 0.02,
    keep: false,
    recordsize: '64K',
    log: () => undefined,
    out: () => undefined,
    ...over,
  });

  test('stores its guest 100 in the store and removes that guest afterwards, unless kept', async () => {
    const rows = await runDemo(options());
    expect(rows).toHaveLength(2);
    expect(await tp.zfs.exists(`${tp.root}/100`)).toBe(false);
    expect(await tp.zfs.exists(tp.root)).toBe(true);
    expect(fs.readdirSync(parent)).toEqual([]);

    const kept = await runDemo(options({ keep: true }));
    expect(snapshotsOf(`${tp.root}/100`).map((s) => s.split('@')[1])).toEqual(kept.map((r) => `vzdump-${r.timestamp}`));
  });

  test('refuses a store that already holds guest 100, and leaves that guest as it was', async () => {
    if (!(await tp.zfs.exists(`${tp.root}/100`))) await runDemo(options({ days: 1, keep: true }));
    const before = snapshotsOf(`${tp.root}/100`);
    await expect(runDemo(options())).rejects.toThrow(`'${tp.root}/100' already exists - the demo stores its guest 100 there; pass another --dataset, or remove it`);
    expect(snapshotsOf(`${tp.root}/100`)).toEqual(before);
    expect(fs.readdirSync(parent)).toEqual([]);
  });
});

describeZfs('the demo\'s restore check', () => {
  let tp: TestPool;
  let work: string;
  let store: BackupStore;
  let day: DayArchive;

  beforeAll(async () => {
    tp = await createTestPool({ sizeBytes: 512 << 20 });
    await tp.zfs.create(tp.root);
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'vzdump-zfs-demotest-'));
    store = new BackupStore(tp.zfs, tp.root, { lockDir: path.join(work, 'locks') });
    const series = new BackupSeries({ dir: work, vmid: 100, diskSize: DISK, days: 1, timeZone: 'UTC' });
    day = await series.next();
    await ingestArchive(store, { archive: day.archivePath, timeZone: 'UTC' });
  });
  afterAll(async () => {
    await tp?.destroy();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('passes when the restore matches the guest, comparing every disk byte', async () => {
    await expect(checkRestore(store, 100, day, work)).resolves.toBe(DISK + EFI_DISK_SIZE);
  });

  test('names the first offset where a disk differs from the guest', async () => {
    const disk = day.images.find((i) => i.name === 'drive-scsi0')!;
    const at = 40 * 65536 + 4096 + 17;
    const fd = fs.openSync(disk.path, 'r+');
    const byte = Buffer.alloc(1);
    try {
      fs.readSync(fd, byte, 0, 1, at);
      fs.writeSync(fd, Buffer.from([byte[0]! ^ 0xff]), 0, 1, at);
      const err = await checkRestore(store, 100, day, work).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IntegrityError);
      expect((err as Error).message).toBe(`restored disk '${disk.name}' differs from the original at offset ${40 * 65536}`);
    } finally {
      fs.writeSync(fd, byte, 0, 1, at);
      fs.closeSync(fd);
    }
    await expect(checkRestore(store, 100, day, work)).resolves.toBe(DISK + EFI_DISK_SIZE);
  });

  test('fails when a config differs from the guest', async () => {
    const original = day.configs[0]!;
    const changed: DayArchive = { ...day, configs: [{ name: original.name, data: Buffer.concat([original.data, Buffer.from('cores: 64\n')]) }, ...day.configs.slice(1)] };
    await expect(checkRestore(store, 100, changed, work)).rejects.toThrow(`restored config '${original.name}' differs from the original`);
  });
});
