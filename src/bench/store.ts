/**
 * The store benchmark (`npm run bench store`): generates a daily VM backup series once (an ext4
 * disk changed with debugfs, ~2 % of its blocks per day, written as real `.vma.zst` archives), then
 * for recordsize 16K, 64K and 128K ingests every day with the real CLI into a fresh file-backed
 * pool and prints ingest time against the floor (`zstd -dc ARCHIVE > /dev/null`, the issue's; the
 * same through a pipe, `| cat`, as a reference) and the classic pipeline
 * (`vma extract` + `rsync --inplace --no-whole-file` + `zfs snapshot`), the same data pass with the
 * pool out of the way (./engine.ts: into tmpfs, no ZFS, default recordsize), the snapshot delta against
 * the 4 KiB blocks that really changed and against the day's `.vma.zst`, restore throughput against
 * `cat` / `zstd -c` of the raw image, the pool's own dd speed, peak RSS, and the target verdicts.
 *
 * Owns the choice of measurements, the per-block change count (a 64-bit hash of every 4 KiB block
 * after each day, compared with the day before: no copy of the disk) and the cleanup of what it
 * made. Series content is src/demo/series.ts's, process timing ./measure.ts's, layout ./table.ts's.
 * Guarantees: every file lives in one temp dir under `opts.tmpRoot` (the engine rows' images in
 * one under VZBENCH_ENGINE_DIR); every pool it created is
 * destroyed and a zfs-fuse it started is stopped, at the end, on failure and on SIGINT/SIGTERM;
 * a zfs daemon that was already running is left alone. Speed targets live here only.
 *
 * Knobs (environment): VZBENCH_DAYS (default 5, at least 2), VZBENCH_SIDE_DAYS (days ingested for
 * the non-default recordsizes 16K/128K, default all), VZBENCH_CLASSIC_DAYS (incremental days that
 * also run the classic pipeline on the 64K pool, default all), VZBENCH_CHANGE_PERMILLE (the
 * generator's daily change rate in 1/1000, default 40: about 2 % of the blocks really change),
 * VZBENCH_ENGINE_DIR (the tmpfs directory of the engine rows, default /dev/shm; `none` skips them).
 */
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { IntegrityError, VzError } from '../errors';
import { BLOCK_SIZE as BLOCK, CLUSTER_SIZE } from '../vma/constants';
import { BackupSeries, EFI_DISK_SIZE as EFI_SIZE } from '../demo/series';
import { Zfs } from '../store/zfs';
import { createFilePool, destroyPool, ensureZfsRunning, stopPid } from '../store/pool';
import { ENGINE_SYNC_ARG, engineRoot, type EngineSyncReport } from './engine';
import { loadLine, measureCommand, measurePipeline, syncDisks, warmRun, type BenchOptions, type Measurement, rmrf } from './measure';
import { humanBytes, parseSize } from '../util/format';
import { fixed, gbPerSecond, percent, printTable } from './table';

const DEFAULT_SIZE = 8 * 2 ** 30;
const DEFAULT_DAYS = 5;
/**
 * The generator's daily change rate: the share of the disk's 4 KiB blocks it rewrites (in place or
 * as new files), the spec's 2 %; the really changed share is measured each run and shown in the title.
 */
const DEFAULT_CHANGE_RATE = 0.02;
const VMID = 100;
/** 64K is the store's default (src/config.ts); it runs first and is the one the classic pipeline runs on */
const DEFAULT_RECORDSIZE = '64K';
const RECORDSIZES = [DEFAULT_RECORDSIZE, '16K', '128K'];
const DD_SIZE = 2 ** 30;

/** Targets from the issue. */
const TARGET_CLASSIC = 5;
const AIM_CLASSIC = 10;
const TARGET_FLOOR = 1.5;
const TARGET_SAVING = 0.9;
const TARGET_RSS = 200e6;

const MB = (n: number) => fixed(n / 1e6, 1);
const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');

function log(msg: string): void {
  process.stderr.write(`store bench: ${msg}\n`);
}

function envCount(name: string, fallback: number, min: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  if (!/^\d+$/.test(v) || Number(v) < min) throw new VzError(`invalid ${name} '${v}' - expected a whole number >= ${min}`);
  return Number(v);
}

// ---------------------------------------------------------------------------------------------
// per-block change detection

/** Two independent 32-bit multiplicative folds per 4 KiB block: a 64-bit fingerprint, ~2 GB/s. */
export interface BlockHashes {
  a: Uint32Array;
  b: Uint32Array;
}

function foldBlock(w: Int32Array, o: number): [number, number] {
  let h1 = 0x811c9dc5 | 0;
  let h2 = 0x2545f491 | 0;
  for (let i = o; i < o + BLOCK / 4; i++) {
    const x = w[i]!;
    h1 = Math.imul(h1 ^ x, 0x9e3779b1);
    h2 = Math.imul(h2 + x, 0x85ebca77) ^ (h2 >>> 13);
  }
  return [h1 >>> 0, h2 >>> 0];
}

/** Fingerprints every 4 KiB block of `file` (its size a multiple of 4 KiB), reading 4 MiB at a time. */
export async function hashBlocks(file: string, size: number): Promise<BlockHashes> {
  const n = size / BLOCK;
  const out: BlockHashes = { a: new Uint32Array(n), b: new Uint32Array(n) };
  const buf = Buffer.allocUnsafeSlow(4 << 20);
  const words = new Int32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const fh = await fs.promises.open(file, 'r');
  try {
    let blk = 0;
    for (let pos = 0; pos < size; pos += buf.length) {
      const want = Math.min(buf.length, size - pos);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await fh.read(buf, got, want - got, pos + got);
        if (bytesRead === 0) throw new IntegrityError(`'${file}': ended at ${pos + got}, expected ${size} bytes`, file);
        got += bytesRead;
      }
      for (let o = 0; o < want / 4; o += BLOCK / 4) {
        const [h1, h2] = foldBlock(words, o);
        out.a[blk] = h1;
        out.b[blk] = h2;
        blk++;
      }
    }
  } finally {
    await fh.close();
  }
  return out;
}

/**
 * Blocks whose fingerprint differs, and the 64 KiB clusters holding at least one of them; `prev`
 * undefined = against an all-zero disk.
 */
export function countChanged(prev: BlockHashes | undefined, cur: BlockHashes): { blocks: number; clusters: number } {
  const [z1, z2] = foldBlock(new Int32Array(BLOCK / 4), 0);
  const perCluster = CLUSTER_SIZE / BLOCK;
  let blocks = 0;
  let clusters = 0;
  let lastCluster = -1;
  for (let i = 0; i < cur.a.length; i++) {
    const p1 = prev ? prev.a[i] : z1;
    const p2 = prev ? prev.b[i] : z2;
    if (cur.a[i] !== p1 || cur.b[i] !== p2) {
      blocks++;
      const c = Math.floor(i / perCluster);
      if (c !== lastCluster) clusters++;
      lastCluster = c;
    }
  }
  return { blocks, clusters };
}

// ---------------------------------------------------------------------------------------------
// the benchmark

interface Day {
  day: number;
  archive: string;
  archiveSize: number;
  timestamp: string;
  /** 4 KiB blocks of both disks that differ from the day before (day 1: from all-zero disks) */
  changedBlocks: number;
  /** 64 KiB clusters of both disks with at least one such block */
  changedClusters: number;
}

interface IngestRow {
  rs: string;
  day: Day;
  ingest: Measurement;
  /** `zstd -dc ARCHIVE > /dev/null`: the target's floor */
  floor: Measurement;
  /** `zstd -dc ARCHIVE | cat > /dev/null`: the floor plus a pipe hop, which the ingest pays too */
  pipeFloor: Measurement;
  /** the ingest's own counts: clusters it wrote into, 4 KiB blocks it wrote */
  clustersWritten: number;
  blocksWritten: number;
  delta: number;
  /** CPU seconds the zfs-fuse daemon used during the ingest (undefined: in-kernel OpenZFS) */
  daemonCpu?: number;
  /** the same day's data pass alone into tmpfs (src/bench/engine.ts), default recordsize only */
  engine?: Measurement;
  classic?: { total: number; extract: number; rsync: number; snapshot: number; delta: number };
}

interface PoolRow {
  what: string;
  bytes: number;
  m: Measurement;
}

interface RestoreRow {
  what: string;
  m: Measurement;
  floor?: Measurement;
  cli?: boolean;
}

/** What the run created, for the cleanup (normal, failure and signal paths). */
interface Owned {
  dir: string;
  pools: Map<string, string>; // pool name -> vdev path
  daemonPid?: number;
  /** the engine rows' directory on tmpfs (outside `dir`) */
  engineDir?: string;
}

/** Synchronous cleanup for the signal path: destroy our pools (retried while busy), stop our daemon, remove the dir. */
function cleanupSync(owned: Owned): void {
  for (const [pool] of owned.pools) {
    for (let i = 0; i < 5; i++) {
      const r = spawnSync('zpool', ['destroy', '-f', pool], { encoding: 'utf8' });
      if (r.status === 0 || /no such pool/i.test(r.stderr ?? '')) break;
      spawnSync('sleep', ['1']);
    }
  }
  owned.pools.clear();
  if (owned.daemonPid !== undefined) {
    try {
      process.kill(owned.daemonPid, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  rmrf(owned.dir);
  if (owned.engineDir) rmrf(owned.engineDir);
}

/** Runs the store benchmark and prints its tables. */
export async function runStoreBench(opts: BenchOptions): Promise<void> {
  const size = Math.ceil((opts.size ?? DEFAULT_SIZE) / 2 ** 20) * 2 ** 20;
  const owned: Owned = { dir: fs.mkdtempSync(path.join(opts.tmpRoot, 'vzdump-zfs-storebench-')), pools: new Map() };
  const onSignal = (sig: NodeJS.Signals) => {
    log(`${sig}: cleaning up`);
    cleanupSync(owned);
    process.kill(process.pid, sig);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const zfs = new Zfs();
  try {
    const daemon = await ensureZfsRunning({ zfs });
    if (daemon.started) {
      owned.daemonPid = daemon.pid;
      log(`started zfs-fuse (pid ${daemon.pid})`);
    }
    await bench(owned, size, opts, zfs);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const [pool, vdev] of owned.pools) {
      try {
        await destroyPool(pool, { zfs, vdevPath: vdev });
      } catch (e) {
        log(`cleanup: ${(e as Error).message}`);
      }
    }
    owned.pools.clear();
    if (owned.daemonPid !== undefined) await stopPid(owned.daemonPid);
    rmrf(owned.dir);
    if (owned.engineDir) rmrf(owned.engineDir);
  }
}

async function bench(owned: Owned, size: number, opts: BenchOptions, zfs: Zfs): Promise<void> {
  const dir = owned.dir;
  const days = envCount('VZBENCH_DAYS', DEFAULT_DAYS, 2);
  const sideDays = Math.min(days, envCount('VZBENCH_SIDE_DAYS', days, 2));
  const classicDays = Math.min(days - 1, envCount('VZBENCH_CLASSIC_DAYS', days - 1, 1));
  const changeRate = envCount('VZBENCH_CHANGE_PERMILLE', DEFAULT_CHANGE_RATE * 1000, 1) / 1000;
  const tStart = Date.now();
  const since = () => `${((Date.now() - tStart) / 1000).toFixed(0)} s`;

  // ---- the series, generated once; each day's changed blocks counted from block fingerprints ----
  const seriesDir = path.join(dir, 'series');
  fs.mkdirSync(seriesDir);
  const series = new BackupSeries({ dir: seriesDir, vmid: VMID, diskSize: size, days, changeRate, timeZone: 'UTC', zstdThreads: 2 });
  const dayList: Day[] = [];
  let prev: BlockHashes[] | undefined;
  for (let d = 1; d <= days; d++) {
    const a = await series.next();
    const cur = [await hashBlocks(series.diskPath, size), await hashBlocks(series.efiPath, EFI_SIZE)];
    const changed = cur.map((h, i) => countChanged(prev?.[i], h));
    const changedBlocks = changed.reduce((n, c) => n + c.blocks, 0);
    const changedClusters = changed.reduce((n, c) => n + c.clusters, 0);
    prev = cur;
    dayList.push({ day: d, archive: a.archivePath, archiveSize: a.archiveSize, timestamp: a.timestamp, changedBlocks, changedClusters });
    log(`[${since()}] generated day ${d}: ${path.basename(a.archivePath)} ${MB(a.archiveSize)} MB, ${changedBlocks} changed 4 KiB blocks in ${changedClusters} clusters`);
  }
  prev = undefined;
  const images = [series.diskPath, series.efiPath];
  const imageBytes = size + EFI_SIZE;
  syncDisks();
  const tMeasure = Date.now();

  const ingestRows: IngestRow[] = [];
  const restoreRows: RestoreRow[] = [];
  const poolRows: PoolRow[] = [];
  let ddNote = '';
  const engine = engineRoot(imageBytes);
  if ('dir' in engine) owned.engineDir = fs.mkdtempSync(path.join(engine.dir, 'vzdump-zfs-engine-'));
  else log(`no engine rows: ${engine.skip}`);

  // ---- restore floors (the raw images, read by cat and compressed by zstd -c) ----
  const catFloor = await warmRun(() => measurePipeline(['cat', ...images], ['cat']), syncDisks);
  restoreRows.push({ what: 'floor: cat images | cat > /dev/null', m: catFloor });
  const zstdFloor = await warmRun(() => measurePipeline(['zstd', '-q', '-c', '--threads=1', ...images], ['cat']), syncDisks);
  restoreRows.push({ what: 'floor: zstd -c images | cat > /dev/null', m: zstdFloor });
  log(`[${since()}] restore floors measured`);

  for (const rs of RECORDSIZES) {
    const isDefault = rs === DEFAULT_RECORDSIZE;
    const nDays = isDefault ? days : sideDays;
    const pool = `vzbench${process.pid}r${rs.toLowerCase()}`;
    const poolDir = path.join(dir, `pool-${rs}`);
    const vdev = path.join(poolDir, 'vdev', 'pool.img');
    const mnt = path.join(poolDir, 'mnt');
    // the store's first full copy plus deltas (x1.6), plus the classic pipeline's own copy on the default pool
    const poolSize = Math.ceil((size * (isDefault ? 2.8 : 1.6) + 2 ** 30) / 2 ** 20) * 2 ** 20;
    await createFilePool(pool, vdev, poolSize, mnt, { zfs });
    owned.pools.set(pool, vdev);
    log(`[${since()}] recordsize ${rs}: pool '${pool}' (${humanBytes(poolSize)} sparse)`);

    if (isDefault) ddNote = await poolSpeed(zfs, pool, vdev, mnt, dir, Math.min(DD_SIZE, size), poolRows);

    const root = `${pool}/backups`;
    await zfs.create(root, { compression: 'on' }); // guest datasets inherit it, as the classic dataset below sets it
    const cfg = path.join(poolDir, 'config.yaml');
    fs.writeFileSync(cfg, `store:\n  recordsize: ${rs}\n  lockDir: ${path.join(poolDir, 'locks')}\n`);
    const storeArgs = ['--dataset', root, '--config', cfg, '--tz', 'UTC', '-q'];

    let classicDs: string | undefined;
    let classicPrev: string | undefined;
    if (isDefault) {
      classicDs = `${pool}/classic`;
      await zfs.create(classicDs, { recordsize: rs, compression: 'on' });
    }

    let prevSnap: string | undefined;
    for (const day of dayList.slice(0, nDays)) {
      const floor = await fasterOfTwo(() => measureCommand(['zstd', '-q', '-d', '-c', day.archive]));
      const pipeFloor = await fasterOfTwo(() => measurePipeline(['zstd', '-q', '-d', '-c', day.archive], ['cat']));
      const outFile = path.join(poolDir, `ingest-${day.day}.out`);
      const daemonBefore = daemonCpuSeconds();
      const ingest = await measureCommand([...opts.cli, 'ingest', day.archive, ...storeArgs], { stdout: { file: outFile } });
      const daemonAfter = daemonCpuSeconds();
      const daemonCpu = daemonBefore !== undefined && daemonAfter !== undefined ? daemonAfter - daemonBefore : undefined;
      const out = fs.readFileSync(outFile, 'utf8');
      const m = /(\d+) of \d+ 64 KiB clusters changed .*?, (\d+) 4 KiB blocks written/.exec(out);
      if (!m) throw new VzError(`ingest of '${path.basename(day.archive)}' printed no cluster and block counts: ${out.trim().slice(0, 200)}`);
      const snap = `${root}/${VMID}@vzdump-${day.timestamp}`;
      const delta = await zfs.sendSize(prevSnap, snap);
      prevSnap = snap;
      const row: IngestRow = { rs, day, ingest, floor, pipeFloor, clustersWritten: Number(m[1]), blocksWritten: Number(m[2]), delta, daemonCpu };
      if (isDefault && owned.engineDir) row.engine = await engineDay(opts, day, owned.engineDir, rs, row, poolDir);
      if (classicDs && day.day <= classicDays + 1) {
        row.classic = await classicDay(opts, zfs, day, classicDs, path.join(mnt, 'classic'), path.join(dir, 'extract'), classicPrev);
        classicPrev = `${classicDs}@${day.timestamp}`;
      }
      ingestRows.push(row);
      log(
        `[${since()}] ${rs} day ${day.day}: ingest ${ingest.seconds.toFixed(1)} s (floor ${floor.seconds.toFixed(1)} s), ` +
          `delta ${MB(delta)} MB${row.classic ? `, classic ${row.classic.total.toFixed(1)} s` : ''}`,
      );
    }

    // ---- restore the last ingested day ----
    const last = dayList[nDays - 1]!;
    for (const ext of ['vma', 'vma.zst'] as const) {
      const outFile = path.join(dir, `restore.${ext}`);
      rmrf(outFile);
      syncDisks();
      const m = await measureCommand([...opts.cli, 'restore', String(VMID), last.timestamp, '-o', outFile, ...storeArgs]);
      rmrf(outFile);
      restoreRows.push({ what: `restore ${rs} day ${last.day} -o .${ext}`, m, floor: ext === 'vma' ? catFloor : zstdFloor, cli: true });
    }
    log(`[${since()}] ${rs}: restore measured`);
    if (isDefault && owned.engineDir) {
      rmrf(owned.engineDir); // gives its memory back before the next pool
      owned.engineDir = undefined;
    }

    await destroyPool(pool, { zfs, vdevPath: vdev });
    owned.pools.delete(pool);
  }
  const measured = `measured in ${((Date.now() - tMeasure) / 1000).toFixed(0)} s after ${((tMeasure - tStart) / 1000).toFixed(0)} s of generation, ${loadLine()} at the end`;
  log(measured);
  const engineNote = 'skip' in engine ? engine.skip : undefined;
  report(dayList, size, imageBytes, ingestRows, restoreRows, poolRows, ddNote, { days, sideDays, classicDays, changeRate, measured, engineNote });
}

/**
 * CPU seconds (user + system) the running zfs-fuse daemon has used so far, from /proc; undefined
 * when there is none (in-kernel OpenZFS). Its work competes with ingest for the same cores.
 */
function daemonCpuSeconds(): number | undefined {
  const r = spawnSync('pgrep', ['-x', 'zfs-fuse'], { encoding: 'utf8' });
  const pid = (r.stdout ?? '').trim().split('\n')[0];
  if (!pid) return undefined;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
    const ticks = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;
    return (Number(f[11]) + Number(f[12])) / ticks; // utime, stime
  } catch {
    return undefined;
  }
}

/**
 * The day's data pass alone (src/bench/engine.ts) into `dir` on tmpfs, which holds the previous
 * days' images like the guest dataset does; its counts must be the ingest's own, or the two did
 * not do the same work.
 */
async function engineDay(opts: BenchOptions, day: Day, dir: string, rs: string, row: IngestRow, outDir: string): Promise<Measurement> {
  const outFile = path.join(outDir, `engine-${day.day}.out`);
  const m = await measureCommand([...opts.self, ENGINE_SYNC_ARG, day.archive, dir, String(parseSize(rs))], { stdout: { file: outFile } });
  const got = JSON.parse(fs.readFileSync(outFile, 'utf8')) as EngineSyncReport;
  if (got.clustersWritten !== row.clustersWritten || got.blocksWritten !== row.blocksWritten) {
    throw new VzError(
      `day ${day.day}: the engine alone wrote ${got.clustersWritten} clusters / ${got.blocksWritten} blocks, ` +
        `the ingest ${row.clustersWritten} / ${row.blocksWritten}: they did not do the same work`,
    );
  }
  return m;
}

/** Runs `fn` twice and keeps the faster run: the floor as a stable lower bound on a busy machine. */
async function fasterOfTwo(fn: () => Promise<Measurement>): Promise<Measurement> {
  const a = await fn();
  const b = await fn();
  return a.seconds <= b.seconds ? a : b;
}

/** One day of the classic pipeline: extract to a temp dir, rsync into the plain dataset, snapshot. */
async function classicDay(
  opts: BenchOptions,
  zfs: Zfs,
  day: Day,
  ds: string,
  dsDir: string,
  xdir: string,
  prevSnap: string | undefined,
): Promise<NonNullable<IngestRow['classic']>> {
  rmrf(xdir);
  syncDisks();
  const extract = await measureCommand([...opts.cli, 'vma', 'extract', day.archive, xdir]);
  const files = fs
    .readdirSync(xdir)
    .filter((f) => /^disk-.*\.raw$/.test(f))
    .map((f) => path.join(xdir, f));
  const rsync = await measureCommand(['rsync', '--inplace', '--no-whole-file', ...files, `${dsDir}/`]);
  const snap = `${ds}@${day.timestamp}`;
  const snapshot = await measureCommand([zfs.zfsBin, 'snapshot', snap]);
  rmrf(xdir);
  const delta = await zfs.sendSize(prevSnap, snap);
  return { total: extract.seconds + rsync.seconds + snapshot.seconds, extract: extract.seconds, rsync: rsync.seconds, snapshot: snapshot.seconds, delta };
}

/** dd of `bytes` random data into a file of a dataset (fsync) and back out; returns a note on the read. */
async function poolSpeed(zfs: Zfs, pool: string, vdev: string, mnt: string, dir: string, bytes: number, rows: PoolRow[]): Promise<string> {
  const rand = path.join(dir, 'random.bin');
  const fh = await fs.promises.open(rand, 'wx');
  try {
    for (let done = 0; done < bytes; ) {
      const n = Math.min(16 << 20, bytes - done);
      await fh.write(crypto.randomBytes(n));
      done += n;
    }
  } finally {
    await fh.close();
  }
  const ds = `${pool}/ddtest`;
  await zfs.create(ds, { recordsize: '128K', compression: 'off' });
  const file = path.join(mnt, 'ddtest', 'random.bin');
  await measureCommand(['cat', rand]); // the source in the page cache
  syncDisks();
  rows.push({ what: `dd write ${humanBytes(bytes)} into the pool (bs=1M, conv=fsync)`, bytes, m: await measureCommand(['dd', `if=${rand}`, `of=${file}`, 'bs=1M', 'conv=fsync', 'status=none']) });
  let note = 'the pool was exported and imported between write and read (ARC cold)';
  try {
    await zfs.runZpool(['export', pool]);
    await zfs.runZpool(['import', '-d', path.dirname(vdev), pool]);
  } catch (e) {
    note = `export/import failed (${(e as Error).message.split('\n')[0]}): the read may come from the ARC`;
    if (!(await zfs.exists(ds))) throw e;
  }
  rows.push({ what: `dd read ${humanBytes(bytes)} back (bs=1M, of=/dev/null)`, bytes, m: await measureCommand(['dd', `if=${file}`, 'of=/dev/null', 'bs=1M', 'status=none']) });
  await zfs.destroy(ds);
  rmrf(rand);
  return note;
}

/** The measured share of changed blocks per incremental day, e.g. '1.0-1.3 %'. */
function changedShare(days: Day[], size: number): string {
  const shares = days.filter((d) => d.day > 1).map((d) => (d.changedBlocks * BLOCK * 100) / (size + EFI_SIZE));
  const lo = Math.min(...shares).toFixed(1);
  const hi = Math.max(...shares).toFixed(1);
  return lo === hi ? `${lo} %` : `${lo}-${hi} %`;
}

function report(
  days: Day[],
  size: number,
  imageBytes: number,
  rows: IngestRow[],
  restoreRows: RestoreRow[],
  poolRows: PoolRow[],
  ddNote: string,
  k: { days: number; sideDays: number; classicDays: number; changeRate: number; measured: string; engineNote?: string },
): void {
  const verdicts: string[] = [];
  const incr = (r: IngestRow) => r.day.day > 1;

  // ---- table 1: ingest time ----
  printTable({
    title:
      `Store ingest: ${humanBytes(size)} ext4 disk (+ 528 KiB EFI disk), ${k.days} daily backups, generator change rate ${fixed(k.changeRate * 100, 1)} % a day ` +
      `(${changedShare(days, size)} of the 4 KiB blocks really changed on days 2-${k.days}); ` +
      `recordsize ${DEFAULT_RECORDSIZE} (default) on ${k.days} days, ${RECORDSIZES.filter((r) => r !== DEFAULT_RECORDSIZE).join('/')} on ${k.sideDays}`,
    columns: [
      { title: 'recordsize' },
      { title: 'day', align: 'right' },
      { title: '.vma.zst MB', align: 'right' },
      { title: 'ingest s', align: 'right' },
      { title: 'floor s', align: 'right' },
      { title: 'ingest/floor', align: 'right' },
      { title: '| cat s', align: 'right' },
      { title: 'ingest/| cat', align: 'right' },
      { title: 'CPU s ingest+zfs-fuse / | cat', align: 'right' },
      { title: 'classic s', align: 'right' },
      { title: '(extract+rsync+snap)' },
      { title: 'classic/ingest', align: 'right' },
      { title: 'ingest RSS MB', align: 'right' },
    ],
    rows: rows.map((r) => [
      r.rs,
      r.day.day === 1 ? '1 (full)' : String(r.day.day),
      MB(r.day.archiveSize),
      fixed(r.ingest.seconds, 1),
      fixed(r.floor.seconds, 1),
      fixed(r.ingest.seconds / r.floor.seconds, 2),
      fixed(r.pipeFloor.seconds, 1),
      fixed(r.ingest.seconds / r.pipeFloor.seconds, 2),
      `${fixed(r.ingest.cpuSeconds, 1)}+${r.daemonCpu !== undefined ? fixed(r.daemonCpu, 1) : '-'} / ${fixed(r.pipeFloor.cpuSeconds, 1)}`,
      r.classic ? fixed(r.classic.total, 1) : '',
      r.classic ? `${fixed(r.classic.extract, 1)}+${fixed(r.classic.rsync, 1)}+${fixed(r.classic.snapshot, 1)}` : '',
      r.classic ? `${fixed(r.classic.total / r.ingest.seconds, 1)}x` : '',
      fixed(r.ingest.peakRss / 1e6, 0),
    ]),
    footer: [
      'ingest = `node bin/vzdump-zfs ingest ARCHIVE --dataset ROOT --tz UTC` under GNU time (node start-up, zstd, digests, block writes, zfs snapshot and properties included).',
      'floor = `zstd -dc ARCHIVE > /dev/null` (the target\'s floor); | cat = `zstd -dc ARCHIVE | cat > /dev/null` (the same through a pipe, as the ingest reads it); each the faster of two runs just before the ingest (archive in the page cache); ingest and classic are single runs.',
      `CPU s = user+system seconds (GNU time, zstd included) of ingest, plus what the zfs-fuse daemon used meanwhile, against the | cat pipeline's: with ${os.cpus().length} cores, (ingest + zfs-fuse) / ${os.cpus().length} is a lower bound on the ingest's wall time.`,
      `classic = \`vma extract\` to a temp dir on the tmp disk + \`rsync --inplace --no-whole-file disk-*.raw\` into a plain dataset (same recordsize, compression=on) + \`zfs snapshot\`, on ${k.classicDays} incremental day(s) of the ${DEFAULT_RECORDSIZE} run; day 1 seeds its dataset.`,
    ],
  });
  const defIncr = rows.filter((r) => r.rs === DEFAULT_RECORDSIZE && incr(r));
  const classicRows = defIncr.filter((r) => r.classic);
  if (classicRows.length > 0) {
    const worst = Math.min(...classicRows.map((r) => r.classic!.total / r.ingest.seconds));
    verdicts.push(
      `incremental ingest >= ${TARGET_CLASSIC}x faster than the classic pipeline (aim ${AIM_CLASSIC}x), ${DEFAULT_RECORDSIZE}, ${classicRows.length} day(s): ` +
        `${verdict(worst >= TARGET_CLASSIC)} (worst ${fixed(worst, 1)}x${worst >= AIM_CLASSIC ? ', aim reached' : ''})`,
    );
  }
  for (const rs of RECORDSIZES) {
    const rr = rows.filter((r) => r.rs === rs && incr(r));
    if (rr.length === 0) continue;
    const worst = Math.max(...rr.map((r) => r.ingest.seconds / r.floor.seconds));
    const worstPipe = Math.max(...rr.map((r) => r.ingest.seconds / r.pipeFloor.seconds));
    verdicts.push(
      `incremental ingest within ${TARGET_FLOOR}x of the zstd -dc > /dev/null floor, ${rs}: ${verdict(worst <= TARGET_FLOOR)} ` +
        `(worst ${fixed(worst, 2)}x; ${fixed(worstPipe, 2)}x of zstd -dc | cat)`,
    );
  }
  process.stdout.write('\n');

  // ---- table 1b: the engine alone, the pool out of the way ----
  const engineRows = rows.filter((r) => r.engine);
  if (engineRows.length > 0) {
    const cores = os.cpus().length;
    printTable({
      title: `Ingest data pass alone, pool out of the way: the same days (${DEFAULT_RECORDSIZE} records) into a directory on tmpfs, no ZFS`,
      columns: [
        { title: 'day', align: 'right' },
        { title: 'floor s', align: 'right' },
        { title: 'engine s', align: 'right' },
        { title: 'engine/floor', align: 'right' },
        { title: 'ingest s', align: 'right' },
        { title: 'ingest - engine s', align: 'right' },
        { title: 'CPU s engine / ingest+zfs-fuse', align: 'right' },
        { title: 'engine RSS MB', align: 'right' },
      ],
      rows: engineRows.map((r) => [
        r.day.day === 1 ? '1 (full)' : String(r.day.day),
        fixed(r.floor.seconds, 1),
        fixed(r.engine!.seconds, 1),
        fixed(r.engine!.seconds / r.floor.seconds, 2),
        fixed(r.ingest.seconds, 1),
        fixed(r.ingest.seconds - r.engine!.seconds, 1),
        `${fixed(r.engine!.cpuSeconds, 1)} / ${fixed(r.ingest.cpuSeconds + (r.daemonCpu ?? 0), 1)}`,
        fixed(r.engine!.peakRss / 1e6, 0),
      ]),
      footer: [
        `engine = \`node dist/bench.js ${ENGINE_SYNC_ARG} ARCHIVE DIR 65536\` under GNU time: node start-up, zstd, the VMA reader, digests and the writes of changed clusters, as in ingest (src/ingest/sync-disks.ts), into a tmpfs directory that holds the previous days' images; no zfs commands, no snapshot, no zfs-fuse daemon on the cores.`,
        'ingest - engine = what the pool adds: zfs-fuse\'s own CPU and I/O, the zfs commands, the snapshot, configs and manifest. Each day runs right after that day\'s ingest, against the same floor; both write the same clusters and blocks (checked).',
        `With ${cores} cores, engine CPU s / ${cores} is a lower bound on the engine's wall time.`,
      ],
    });
    const incrEngine = engineRows.filter(incr);
    if (incrEngine.length > 0) {
      const worst = Math.max(...incrEngine.map((r) => r.engine!.seconds / r.floor.seconds));
      verdicts.push(
        `incremental ingest within ${TARGET_FLOOR}x of the floor with the pool out of the way (its data pass into tmpfs, no ZFS): ` +
          `${verdict(worst <= TARGET_FLOOR)} (worst ${fixed(worst, 2)}x)`,
      );
    }
    process.stdout.write('\n');
  } else if (k.engineNote) {
    process.stdout.write(`(no "pool out of the way" rows: ${k.engineNote})\n\n`);
  }

  // ---- table 2: snapshot delta ----
  let crossOk = true;
  const deltaRows: string[][] = [];
  for (const rs of RECORDSIZES) {
    const rr = rows.filter((r) => r.rs === rs);
    for (const r of rr) {
      const changed = r.day.changedBlocks * BLOCK;
      // below 64K the ingest writes exactly the changed blocks; from 64K on, changed clusters whole
      // (day 1 writes only non-zero blocks into the new, all-zero image, whatever the recordsize)
      const wholeClusters = (parseSize(rs) ?? 0) >= CLUSTER_SIZE && r.day.day > 1;
      if (r.clustersWritten !== r.day.changedClusters) crossOk = false;
      if (wholeClusters ? r.blocksWritten < r.day.changedBlocks : r.blocksWritten !== r.day.changedBlocks) crossOk = false;
      deltaRows.push([
        rs,
        r.day.day === 1 ? '1 (full)' : String(r.day.day),
        String(r.day.changedBlocks),
        String(r.day.changedClusters),
        String(r.clustersWritten),
        String(r.blocksWritten),
        MB(changed),
        MB(r.delta),
        fixed(r.delta / changed, 2),
        MB(r.day.archiveSize),
        percent(1 - r.delta / r.day.archiveSize),
        r.classic ? MB(r.classic.delta) : '',
      ]);
    }
    const ri = rr.filter(incr);
    if (ri.length > 0) {
      const changed = ri.reduce((s, r) => s + r.day.changedBlocks * BLOCK, 0);
      const delta = ri.reduce((s, r) => s + r.delta, 0);
      const zst = ri.reduce((s, r) => s + r.day.archiveSize, 0);
      deltaRows.push([rs, `2-${ri[ri.length - 1]!.day.day}`, '', '', '', '', MB(changed), MB(delta), fixed(delta / changed, 2), MB(zst), percent(1 - delta / zst), '']);
      const worst = Math.min(...ri.map((r) => 1 - r.delta / r.day.archiveSize));
      verdicts.push(`snapshot delta saves >= ${TARGET_SAVING * 100} % against the day's .vma.zst, ${rs}: ${verdict(worst >= TARGET_SAVING)} (worst day ${fixed(worst * 100, 1)} %, delta/changed ${fixed(delta / changed, 2)} over days 2-${ri[ri.length - 1]!.day.day})`);
    }
  }
  printTable({
    title: 'Snapshot delta (zfs send -i bytes) per day against the 4 KiB blocks that really changed and the day\'s .vma.zst',
    columns: [
      { title: 'recordsize' },
      { title: 'day', align: 'right' },
      { title: 'changed blocks', align: 'right' },
      { title: 'in clusters', align: 'right' },
      { title: 'clusters written', align: 'right' },
      { title: 'blocks written', align: 'right' },
      { title: 'changed MB', align: 'right' },
      { title: 'delta MB', align: 'right' },
      { title: 'delta/changed', align: 'right' },
      { title: '.vma.zst MB', align: 'right' },
      { title: 'saving', align: 'right' },
      { title: 'classic delta MB', align: 'right' },
    ],
    rows: deltaRows,
    footer: [
      'changed blocks = 4 KiB blocks of the two disk images whose 64-bit fingerprint differs from the day before (day 1: from all-zero disks), computed by the bench; in clusters = the 64 KiB clusters holding them;',
      'clusters written, blocks written = the ingest\'s own counts: below recordsize 64K it reads a changed cluster and writes only its changed blocks; from 64K on it writes changed clusters whole, unread (a record holds whole clusters and is rewritten whole anyway);',
      `on every day clusters written = changed clusters, and blocks written = changed blocks below 64K (>= from 64K): ${crossOk ? 'they agree' : 'they DISAGREE (see the rows)'}.`,
      'delta = bytes of `zfs send -i previous current` (day 1: the full stream); saving = 1 - delta / .vma.zst; classic delta = the same for the rsync --inplace dataset.',
      'MB are decimal (1e6); the "2-N" rows are the sums over the incremental days.',
    ],
  });
  process.stdout.write('\n');

  // ---- table 3: restore and pool speed ----
  const restoreTable = restoreRows.map((r) => {
    const gbps = gbPerSecond(imageBytes, r.m.seconds);
    const ratio = r.floor ? gbps / gbPerSecond(imageBytes, r.floor.seconds) : undefined;
    return [r.what, fixed(imageBytes / 1e9, 2), fixed(r.m.seconds, 1), fixed(gbps, 2), percent(ratio), fixed(r.m.peakRss / 1e6, 0)];
  });
  for (const p of poolRows) {
    restoreTable.push([p.what, fixed(p.bytes / 1e9, 2), fixed(p.m.seconds, 1), fixed(gbPerSecond(p.bytes, p.m.seconds), 2), '', '']);
  }
  printTable({
    title: `Restore of the last day to a file (disk bytes ${humanBytes(imageBytes)}) against the raw images, and the pool's own speed (${DEFAULT_RECORDSIZE} pool)`,
    columns: [
      { title: 'operation' },
      { title: 'GB', align: 'right' },
      { title: 'wall s', align: 'right' },
      { title: 'GB/s', align: 'right' },
      { title: 'vs floor', align: 'right' },
      { title: 'peak RSS MB', align: 'right' },
    ],
    rows: restoreTable,
    footer: [
      'GB/s in disk bytes (decimal); restore = `node bin/vzdump-zfs restore 100 TS -o FILE` writing the file on the tmp disk, floors read the final raw images and write nothing.',
      '.vma is compared with cat, .vma.zst with zstd -c --threads=1 (restore\'s default); floors are the second of two runs.',
      `pool speed: dd with a random 1 MiB-block file into a compression=off dataset; ${ddNote}.`,
    ],
  });
  const cliRss = [...rows.map((r) => r.ingest.peakRss), ...restoreRows.filter((r) => r.cli).map((r) => r.m.peakRss)];
  const maxRss = Math.max(...cliRss);
  verdicts.push(`peak RSS < ${TARGET_RSS / 1e6} MB in every ingest and restore: ${verdict(maxRss < TARGET_RSS)} (max ${fixed(maxRss / 1e6, 0)} MB)`);
  process.stdout.write('\n');
  for (const line of [k.measured, ...verdicts.map((v) => `target: ${v}`)]) process.stdout.write(`${line}\n`);
}
