/**
 * The main job a newcomer runs: a file-backed pool (zfs-fuse where the kernel has no ZFS), a
 * generated week of daily VM backups, every day ingested, the last one restored and checked byte
 * for byte, and a table of what each day cost: `.vma.zst` size against the snapshot's real delta
 * (`zfs send -i` bytes).
 *
 * Wires store, ingest, restore and the series generator; owns only the work directory and the
 * cleanup of what it created (pool, zfs-fuse daemon it started, its guest dataset in a given
 * store, files), unless asked to keep them. Never touches what was there before: its work
 * directory is always a new one, and a given store must not hold its guest (100) yet.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConflictError, IntegrityError } from '../errors';
import { expandCluster } from '../vma/reader';
import { CLUSTER_SIZE } from '../vma/constants';
import { readArchiveRecords } from '../ingest/archive-records';
import { Zfs } from '../store/zfs';
import { BackupStore } from '../store/store';
import { createFilePool, destroyPool, ensureZfsRunning } from '../store/pool';
import { ingestArchive } from '../ingest/ingest';
import { restoreBackup } from '../restore/restore';
import { humanBytes } from '../util/format';
import { formatTable } from '../util/table';
import { BackupSeries, type DayArchive } from './series';

export interface DemoOptions {
  /** use this existing root dataset instead of a throwaway file-backed pool; it must not hold guest 100 */
  dataset?: string;
  /** where the demo makes its own work directory (default: the system temp dir) */
  workDir?: string;
  days: number;
  diskSize: number;
  changeRate: number;
  keep: boolean;
  recordsize: string;
  log: (msg: string) => void;
  out: (text: string) => void;
}

export interface DemoRow {
  day: number;
  timestamp: string;
  diskSize: number;
  archiveSize: number;
  delta: number;
  ingestSeconds: number;
  blocksWritten: number;
}

const human = (n: number): string => humanBytes(n, 1);

export function formatDemoTable(rows: DemoRow[]): string {
  const body = rows.map((r) => [
    String(r.day),
    r.timestamp,
    human(r.diskSize),
    human(r.archiveSize),
    human(r.delta),
    `${((1 - r.delta / r.archiveSize) * 100).toFixed(1)} %`,
    `${r.ingestSeconds.toFixed(1)} s`,
  ]);
  const totalArchive = rows.reduce((s, r) => s + r.archiveSize, 0);
  const totalDelta = rows.reduce((s, r) => s + r.delta, 0);
  body.push(['all', '', '', human(totalArchive), human(totalDelta), `${((1 - totalDelta / totalArchive) * 100).toFixed(1)} %`, '']);
  const right = (title: string) => ({ title, align: 'right' as const });
  return formatTable({
    columns: [{ title: 'day' }, { title: 'backup time' }, right('disk size'), right('.vma.zst'), right('snapshot delta'), right('saving'), right('ingest')],
    rows: body,
  });
}

/**
 * Restores the backup of `day` as .vma.zst and compares its devices, configs and every disk byte
 * with the guest's images as they are now; returns the disk bytes compared. Throws an
 * IntegrityError naming the first difference.
 */
export async function checkRestore(store: BackupStore, vmid: number, day: DayArchive, dir: string): Promise<number> {
  const out = path.join(dir, `restored-${day.timestamp}.vma.zst`);
  fs.rmSync(out, { force: true });
  await restoreBackup(store, { vmid, timestamp: day.timestamp, output: out, compression: 'zst' });
  const fds = day.images.map((i) => fs.openSync(i.path, 'r'));
  const expected = Buffer.alloc(CLUSTER_SIZE);
  let compared = 0;
  try {
    // nothing here keeps a record's blocks
    for await (const rec of readArchiveRecords(out)) {
      if (rec.type === 'header') {
        const h = rec.header;
        if (h.devices.map((d) => `${d.name}:${d.size}`).join(',') !== day.images.map((i) => `${i.name}:${i.size}`).join(',')) {
          throw new IntegrityError(`restored archive has devices ${h.devices.map((d) => d.name).join(',')}, expected ${day.images.map((i) => i.name).join(',')}`, out);
        }
        for (const c of day.configs) {
          const got = h.configs.find((x) => x.name === c.name);
          if (!got || !got.data.equals(c.data)) throw new IntegrityError(`restored config '${c.name}' differs from the original`, out);
        }
        continue;
      }
      const img = day.images[rec.devId - 1]!;
      const off = rec.cluster * CLUSTER_SIZE;
      const len = Math.min(CLUSTER_SIZE, img.size - off);
      expected.fill(0);
      fs.readSync(fds[rec.devId - 1]!, expected, 0, len, off);
      if (!expandCluster(rec).subarray(0, len).equals(expected.subarray(0, len))) {
        throw new IntegrityError(`restored disk '${img.name}' differs from the original at offset ${off}`, out);
      }
      compared += len;
    }
  } finally {
    for (const fd of fds) fs.closeSync(fd);
    fs.rmSync(out, { force: true });
  }
  return compared;
}

export async function runDemo(o: DemoOptions): Promise<DemoRow[]> {
  const zfs = new Zfs();
  const vmid = 100;
  // in a given store, the demo's guest dataset: it must not exist yet, and goes afterwards
  let givenGuest: string | undefined;
  if (o.dataset !== undefined) {
    const given = new BackupStore(zfs, o.dataset);
    await given.checkRoot();
    givenGuest = given.guestDataset(vmid);
    if (await zfs.exists(givenGuest)) {
      throw new ConflictError(`'${givenGuest}' already exists - the demo stores its guest ${vmid} there; pass another --dataset, or remove it`, givenGuest);
    }
  }
  // always a directory of its own (inside --work-dir when given), so cleanup removes only what the demo made
  const parent = o.workDir ?? os.tmpdir();
  fs.mkdirSync(parent, { recursive: true });
  const workDir = fs.mkdtempSync(path.join(parent, 'vzdump-zfs-demo-'));
  const cleanups: Array<() => Promise<void>> = [];
  try {
    let root = o.dataset;
    if (root !== undefined) {
      const guest = givenGuest!; // set with the given store above
      cleanups.push(async () => {
        if (await zfs.exists(guest)) await zfs.destroy(guest, { recursive: true });
      });
    } else {
      const daemon = await ensureZfsRunning({ zfs });
      if (daemon.started) {
        o.log(`started zfs-fuse (pid ${daemon.pid}): this kernel has no ZFS module`);
        cleanups.push(() => daemon.stop());
      }
      const pool = `vzdemo${process.pid}`;
      const vdev = path.join(workDir, 'pool.img');
      // room for the series: the first full backup plus the daily deltas, with slack
      const poolSize = Math.max(1 << 30, Math.ceil(o.diskSize * (1.5 + o.days * o.changeRate * 2)));
      await createFilePool(pool, vdev, poolSize, path.join(workDir, 'mnt'), { zfs });
      cleanups.push(() => destroyPool(pool, { zfs, vdevPath: vdev }));
      root = `${pool}/backups`;
      await zfs.create(root);
      o.log(`created file-backed pool '${pool}' on '${vdev}' (${human(poolSize)} sparse)`);
    }
    const store = new BackupStore(zfs, root, { recordsize: o.recordsize, lockDir: path.join(workDir, 'locks') });
    const seriesDir = path.join(workDir, 'series');
    fs.mkdirSync(seriesDir, { recursive: true });
    const series = new BackupSeries({ dir: seriesDir, vmid, diskSize: o.diskSize, days: o.days, changeRate: o.changeRate, timeZone: 'UTC' });
    o.log(`guest ${vmid}: ${human(o.diskSize)} ext4 disk + 528 KiB EFI disk, ${o.days} daily backups, ~${(o.changeRate * 100).toFixed(0)} % of blocks changed per day`);
    const rows: DemoRow[] = [];
    let previous: string | undefined;
    let last: DayArchive | undefined;
    for (let d = 1; d <= o.days; d++) {
      const day = await series.next();
      last = day;
      const r = await ingestArchive(store, { archive: day.archivePath, timeZone: 'UTC' });
      const snap = r.backup.snapshot;
      const delta = await zfs.sendSize(previous, snap);
      previous = snap;
      rows.push({
        day: d,
        timestamp: day.timestamp,
        diskSize: r.stats!.diskBytes,
        archiveSize: day.archiveSize,
        delta,
        ingestSeconds: r.stats!.seconds,
        blocksWritten: r.stats!.blocksWritten,
      });
      o.log(`day ${d}: ingested '${path.basename(day.archivePath)}' in ${r.stats!.seconds.toFixed(1)} s (${r.stats!.clustersWritten} 64 KiB clusters changed, ${r.stats!.blocksWritten} 4 KiB blocks written)`);
      if (!o.keep) fs.rmSync(day.archivePath);
    }
    const checked = await checkRestore(store, vmid, last!, workDir);
    o.out(formatDemoTable(rows));
    o.out(`restore of day ${o.days} rebuilt a VMA whose configs and ${human(checked)} of disk data match the guest byte for byte\n`);
    if (o.keep) o.out(`kept: work directory '${workDir}', store '${root}'\n`);
    return rows;
  } finally {
    if (!o.keep) {
      for (const c of cleanups.reverse()) {
        try {
          await c();
        } catch (e) {
          o.log(`cleanup: ${(e as Error).message}`);
        }
      }
      fs.rmSync(workDir, { recursive: true, force: true });
    }
  }
}
