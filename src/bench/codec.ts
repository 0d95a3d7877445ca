/**
 * The VMA codec benchmark (`npm run bench codec`): generates a raw disk image with realistic
 * content, then times the real CLI (`vzdump-zfs vma create|verify|extract` as child processes)
 * next to the floors measured in the same run (`cat`, `zstd -c`, `zstd -dc`) and prints one table
 * with GB/s, the ratio to the floor, peak RSS and the verdicts on the codec's targets.
 *
 * Owns the image generator and the choice of measurements; process timing is ./measure.ts's,
 * layout ./table.ts's. Guarantees: every file lives in one temp dir under `opts.tmpRoot` (a real
 * disk), removed at the end, on failure and on SIGINT/SIGTERM; each measurement runs twice and
 * the second (page-cache warm) run is reported; the first `.vma` extract is checked byte for byte
 * against the images (`cmp`), so the numbers are for a correct round trip. Speed targets live
 * here only, never in tests.
 */
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IntegrityError } from '../errors';
import { BLOCK_SIZE as BLOCK, CLUSTER_SIZE as CLUSTER } from '../vma/constants';
import { loadLine, measureCommand, measurePipeline, syncDisks, warmRun, type BenchOptions, type Measurement, rmrf } from './measure';
import { EFI_DISK_SIZE as EFI_SIZE } from '../demo/series';
import { writeFully } from '../util/io';
import { humanBytes } from '../util/format';
import { floats, prng } from '../util/prng';
import { fixed, gbPerSecond, percent, printTable } from './table';

const DEFAULT_SIZE = 4 * 2 ** 30;
const RANDOM_POOL = 64 * 2 ** 20;
const TEXT_POOL = 8 * 2 ** 20;
const BATCH = 64 * CLUSTER;

/** Targets from the issue (reader = `vma verify`, the read path with no disk writes). */
const TARGET_FLOOR_RATIO = 0.9;
const TARGET_GBPS = 1.5;
const TARGET_RSS = 150e6;

// ---------------------------------------------------------------------------------------------
// image generation

/** The project's seeded generator (util/prng) with the two draws the image generator needs. */
class Rng {
  readonly next: () => number;
  /** uniform in [0, 1), from the same stream as next */
  readonly float: () => number;
  constructor(seed: number) {
    this.next = prng(seed);
    this.float = floats(this.next);
  }
  below(n: number): number {
    return Math.floor(this.float() * n);
  }
}

const WORDS = ['kernel', 'systemd', 'sshd', 'cron', 'eth0', 'link', 'up', 'down', 'session', 'opened', 'closed', 'for', 'user', 'root', 'www-data',
  'GET', 'POST', '/api/v1/items', '/index.html', 'HTTP/1.1', '200', '404', 'connection', 'from', 'port', 'started', 'finished', 'job', 'disk', 'sda1'];

/** Log-like text (compressible, not trivially repetitive): syslog lines with varying numbers. */
function textPool(rng: Rng): Buffer {
  const parts: string[] = [];
  let len = 0;
  let t = 1763780000;
  while (len < TEXT_POOL) {
    t += rng.below(5);
    const n = 4 + rng.below(8);
    let msg = '';
    for (let i = 0; i < n; i++) msg += WORDS[rng.below(WORDS.length)] + ' ';
    const line = `${new Date(t * 1000).toISOString()} pve-guest ${WORDS[rng.below(4)]}[${1000 + rng.below(30000)}]: ${msg}id=${rng.next().toString(16)}\n`;
    parts.push(line);
    len += line.length;
  }
  return Buffer.from(parts.join('')).subarray(0, TEXT_POOL);
}

/** What the generator put into an image, in clusters / blocks. */
export interface ImageMix {
  zeroClusters: number;
  textClusters: number;
  randomClusters: number;
  mixedClusters: number;
  /** all-zero 4 KiB blocks inside clusters that are not all zero */
  zeroBlocksInData: number;
  dataBlocks: number;
}

interface Pools {
  random: Buffer;
  text: Buffer;
}

/**
 * Fills one cluster of `buf` at `off` (length `len`); true when it is all zero (a hole). Mix: 40 % zero clusters,
 * 20 % text, 30 % random, 10 % mixed (each 4 KiB block zero with p = 0.6, else text or random),
 * which makes about 10 % of the blocks of data clusters zero.
 */
function fillCluster(buf: Buffer, off: number, len: number, rng: Rng, pools: Pools, mix: ImageMix): boolean {
  const r = rng.float();
  if (r < 0.4) {
    mix.zeroClusters++;
    return true;
  }
  if (r < 0.9) {
    const pool = r < 0.6 ? pools.text : pools.random;
    const src = rng.below(pool.length - len);
    pool.copy(buf, off, src, src + len);
    if (r < 0.6) mix.textClusters++;
    else mix.randomClusters++;
    mix.dataBlocks += Math.ceil(len / BLOCK);
    return false;
  }
  mix.mixedClusters++;
  for (let b = 0; b < len; b += BLOCK) {
    const n = Math.min(BLOCK, len - b);
    mix.dataBlocks++;
    if (rng.float() < 0.6) {
      buf.fill(0, off + b, off + b + n);
      mix.zeroBlocksInData++;
    } else {
      const pool = rng.float() < 0.5 ? pools.text : pools.random;
      const src = rng.below(pool.length - n);
      pool.copy(buf, off + b, src, src + n);
    }
  }
  return false;
}

/** Writes a sparse raw image of `size` bytes (zero clusters are holes, as on a dir storage). */
async function writeImage(file: string, size: number, rng: Rng, pools: Pools, mix: ImageMix): Promise<void> {
  const fh = await fs.promises.open(file, 'wx');
  try {
    await fh.truncate(size);
    const buf = Buffer.allocUnsafe(BATCH);
    for (let pos = 0; pos < size; pos += BATCH) {
      const n = Math.min(BATCH, size - pos);
      const zero: boolean[] = [];
      for (let off = 0; off < n; off += CLUSTER) zero.push(fillCluster(buf, off, Math.min(CLUSTER, n - off), rng, pools, mix));
      // write each run of non-zero clusters with one call; zero clusters stay holes
      for (let i = 0; i < zero.length; ) {
        if (zero[i]) {
          i++;
          continue;
        }
        let j = i;
        while (j < zero.length && !zero[j]) j++;
        const start = i * CLUSTER;
        const end = Math.min(n, j * CLUSTER);
        await writeFully(fh, buf.subarray(start, end), pos + start);
        i = j;
      }
    }
  } finally {
    await fh.close();
  }
}

const CONFIG = `boot: order=scsi0
cores: 2
efidisk0: local-zfs:vm-100-disk-1,efitype=4m,size=528K
machine: q35
memory: 4096
name: bench-guest
net0: virtio=BC:24:11:00:00:01,bridge=vmbr0
ostype: l26
scsi0: local-zfs:vm-100-disk-0,size=SIZE
scsihw: virtio-scsi-single
smbios1: uuid=6f9619ff-8b86-4011-b42d-00cf4fc964ff
`;

// ---------------------------------------------------------------------------------------------
// the benchmark

interface Row {
  what: string;
  bytes: number;
  m: Measurement;
  /** the floor row this one is compared with */
  floor?: Row;
  /** a tighter reference, printed as a note (create .vma.zst: compressing the .vma itself) */
  ref?: Row;
  /**
   * verify rows: judged against the floor ratio (and GB/s for the uncompressed one), also with
   * `startup` taken off: the same command on a one-cluster archive of the same kind, its fixed cost
   */
  reader?: { kind: 'vma' | 'zst'; startup: Row };
  /** a vzdump-zfs process (judged on peak RSS) */
  cli?: boolean;
}

function log(msg: string): void {
  process.stderr.write(`codec bench: ${msg}\n`);
}

function cmpFiles(a: string, b: string): void {
  const r = spawnSync('cmp', ['--', a, b], { encoding: 'utf8' });
  if (r.status !== 0) throw new IntegrityError(`'${b}': differs from '${a}' - ${(r.stdout + r.stderr).trim() || `cmp exit ${r.status}`}`, b);
}

/** Runs the codec benchmark and prints its table. */
export async function runCodecBench(opts: BenchOptions): Promise<void> {
  const size = Math.ceil((opts.size ?? DEFAULT_SIZE) / 512) * 512;
  const dir = fs.mkdtempSync(path.join(opts.tmpRoot, 'vzdump-zfs-bench-'));
  const onSignal = (sig: NodeJS.Signals) => {
    rmrf(dir);
    process.kill(process.pid, sig);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await bench(dir, size, opts);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    rmrf(dir);
  }
}

async function bench(dir: string, size: number, opts: BenchOptions): Promise<void> {
  const f = (name: string) => path.join(dir, name);
  const image = f('vm-100-disk-0.raw');
  const efi = f('vm-100-disk-1.raw');
  const conf = f('qemu-server.conf');
  const vma = f('vzdump-qemu-100-2026_11_22-04_00_00.vma');
  const zst = f('vzdump-qemu-100-2026_11_22-04_00_00.vma.zst');
  const out = f('create-out.vma');
  const xdir = f('extracted');

  // ---- generate ----
  let t0 = Date.now();
  const rng = new Rng(0x9e3779b9);
  const pools: Pools = { random: crypto.randomBytes(RANDOM_POOL), text: textPool(rng) };
  const mix: ImageMix = { zeroClusters: 0, textClusters: 0, randomClusters: 0, mixedClusters: 0, zeroBlocksInData: 0, dataBlocks: 0 };
  await writeImage(image, size, rng, pools, mix);
  await writeImage(efi, EFI_SIZE, rng, pools, mix);
  fs.writeFileSync(conf, CONFIG.replace('SIZE', `${Math.round(size / 2 ** 20)}M`));
  syncDisks();
  const imageBytes = size + EFI_SIZE;
  const clusters = mix.zeroClusters + mix.textClusters + mix.randomClusters + mix.mixedClusters;
  const pct = (n: number, of: number) => `${Math.round((n * 100) / of)} %`;
  log(`generated ${humanBytes(imageBytes)} of images in ${((Date.now() - t0) / 1000).toFixed(1)} s in ${dir}`);

  const cli = (...args: string[]) => [...opts.cli, 'vma', ...args];
  const createArgs = (output: string) =>
    cli('create', output, '-c', conf, '-d', `format=raw:drive-scsi0=${image}`, '-d', `format=raw:drive-efidisk0=${efi}`);
  /** Removes an output of the previous run and flushes, so each run starts alike. */
  const fresh = (p: string) => {
    rmrf(p);
    syncDisks();
  };
  const rows: Row[] = [];
  /** Measures `run` twice (the second, warm run counts) and appends the row. */
  const measure = async (what: string, bytes: number, run: () => Promise<Measurement>, more: Partial<Row> = {}): Promise<Row> => {
    log(`${what} (2 runs)`);
    syncDisks();
    const row: Row = { what, bytes, m: await warmRun(run, syncDisks), ...more };
    rows.push(row);
    return row;
  };
  const zstdC = ['zstd', '-q', '-c', '--threads=1']; // what `vma create x.vma.zst` runs (vzdump's default)

  // ---- writer: floors and vma create ----
  t0 = Date.now();
  const catImage = await measure('floor: cat images > /dev/null', imageBytes, () => measureCommand(['cat', image, efi]));
  await measure('vma create - (stdout > /dev/null)', imageBytes, () => measureCommand(createArgs('-')), { floor: catImage, cli: true });
  const createVma = () => {
    fresh(out);
    return measureCommand(createArgs(out));
  };
  await measure('vma create .vma (file, fsync)', imageBytes, createVma, { floor: catImage, cli: true });
  fs.renameSync(out, vma); // the last run's output is the archive the reader rows use
  const zstdImage = await measure('floor: zstd -c images | cat > /dev/null', imageBytes, () => measurePipeline([...zstdC, image, efi], ['cat']));
  const zstdVma = await measure('ref: zstd -c .vma | cat > /dev/null', imageBytes, () => measurePipeline([...zstdC, vma], ['cat']));
  const zout = f('create-out.vma.zst');
  const createZst = () => {
    fresh(zout);
    return measureCommand(createArgs(zout));
  };
  await measure('vma create .vma.zst (file, fsync)', imageBytes, createZst, { floor: zstdImage, ref: zstdVma, cli: true });
  fs.renameSync(zout, zst);
  const vmaBytes = fs.statSync(vma).size;
  const zstBytes = fs.statSync(zst).size;

  // ---- reader: floors, verify (reads and discards) and extract (writes a sparse image) ----
  // the fixed cost of a verify run (node start, modules, open, header, the decompressor's start):
  // the same command on a one-cluster archive of each kind
  const tinyImage = f('tiny.raw');
  fs.writeFileSync(tinyImage, crypto.randomBytes(CLUSTER));
  const tinyVma = f('tiny.vma');
  const tinyZst = f('tiny.vma.zst');
  for (const t of [tinyVma, tinyZst]) await measureCommand(cli('create', t, '-c', conf, '-d', `format=raw:drive-scsi0=${tinyImage}`));
  const startVma = await measure('vma verify tiny .vma (start-up: 1 cluster)', 0, () => measureCommand(cli('verify', tinyVma)), { cli: true });
  const startZst = await measure('vma verify tiny .vma.zst (start-up: 1 cluster)', 0, () => measureCommand(cli('verify', tinyZst)), { cli: true });
  const catVma = await measure('floor: cat .vma > /dev/null', vmaBytes, () => measureCommand(['cat', vma]));
  await measure('vma verify .vma (read, no writes)', vmaBytes, () => measureCommand(cli('verify', vma)), { floor: catVma, reader: { kind: 'vma', startup: startVma }, cli: true });
  let checked = false;
  const extractVma = async () => {
    fresh(xdir);
    const m = await measureCommand(cli('extract', vma, xdir));
    if (!checked) {
      // once, untimed: the round trip image -> create -> extract must be exact
      cmpFiles(image, path.join(xdir, 'disk-drive-scsi0.raw'));
      cmpFiles(efi, path.join(xdir, 'disk-drive-efidisk0.raw'));
      checked = true;
    }
    return m;
  };
  await measure('vma extract .vma (to a dir, same disk, fsync)', vmaBytes, extractVma, { floor: catVma, cli: true });
  const zstdDc = await measure('floor: zstd -dc .vma.zst | cat > /dev/null', vmaBytes, () => measurePipeline(['zstd', '-q', '-d', '-c', zst], ['cat']));
  await measure('vma verify .vma.zst (read, no writes)', vmaBytes, () => measureCommand(cli('verify', zst)), { floor: zstdDc, reader: { kind: 'zst', startup: startZst }, cli: true });
  const extractZst = () => {
    fresh(xdir);
    return measureCommand(cli('extract', zst, xdir));
  };
  await measure('vma extract .vma.zst (to a dir, same disk, fsync)', vmaBytes, extractZst, { floor: zstdDc, cli: true });
  // ---- PVE's own vma on the same archives, when given (`--pve-vma`): no target, a comparison ----
  // it reads .vma.zst the way vzdump's restore feeds it, through `zstd -dc |`
  if (opts.pveVma) {
    const pve = opts.pveVma;
    await measure("PVE's vma verify .vma", vmaBytes, () => measureCommand([pve, 'verify', vma]), { floor: catVma });
    await measure("PVE's vma extract .vma (to a dir, same disk)", vmaBytes, () => {
      fresh(xdir);
      return measureCommand([pve, 'extract', vma, xdir]);
    }, { floor: catVma });
    await measure("zstd -dc .vma.zst | PVE's vma verify -", vmaBytes, () => measurePipeline(['zstd', '-q', '-d', '-c', zst], [pve, 'verify', '-']), { floor: zstdDc });
  }
  fresh(xdir);
  const measured = `measured in ${((Date.now() - t0) / 1000).toFixed(0)} s, ${loadLine()} at the end`;
  log(measured);

  // ---- table ----
  const verdicts: string[] = [];
  const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
  const tableRows = rows.map((r) => {
    const gbps = r.bytes > 0 ? gbPerSecond(r.bytes, r.m.seconds) : NaN;
    const ratio = r.floor ? gbps / gbPerSecond(r.floor.bytes, r.floor.m.seconds) : undefined;
    const notes: string[] = [];
    if (r.reader && ratio !== undefined && r.floor) {
      const ok = ratio >= TARGET_FLOOR_RATIO;
      notes.push(`floor ${verdict(ok)}`);
      const name = r.reader.kind === 'vma' ? '.vma' : '.vma.zst';
      verdicts.push(`reader ${name} >= ${TARGET_FLOOR_RATIO * 100} % of its floor, wall clock: ${verdict(ok)} (${percent(ratio)})`);
      // the same run less the CLI's fixed start-up (its "verify tiny" row: node, modules, header,
      // decompressor start), which the floors (cat, zstd: ~1 ms) do not pay: the reader's own streaming rate
      const { startup } = r.reader;
      const net = r.m.seconds - startup.m.seconds;
      const netRatio = net > 0 ? gbPerSecond(r.bytes, net) / gbPerSecond(r.floor.bytes, r.floor.m.seconds) : NaN;
      notes.push(`${percent(netRatio)} excl. start-up`);
      verdicts.push(`reader ${name} >= ${TARGET_FLOOR_RATIO * 100} % of its floor, excluding the ${fixed(startup.m.seconds, 2)} s start-up: ${verdict(netRatio >= TARGET_FLOOR_RATIO)} (${percent(netRatio)})`);
    }
    if (r.reader?.kind === 'vma') {
      const ok = gbps >= TARGET_GBPS;
      notes.push(`${TARGET_GBPS} GB/s ${verdict(ok)}`);
      verdicts.push(`reader .vma >= ${TARGET_GBPS} GB/s: ${verdict(ok)} (${fixed(gbps, 2)} GB/s)`);
    }
    if (r.ref) notes.push(`${percent(gbps / gbPerSecond(r.ref.bytes, r.ref.m.seconds))} of ref`);
    if (r.cli) notes.push(`RSS ${verdict(r.m.peakRss < TARGET_RSS)}`);
    return [r.what, r.bytes > 0 ? fixed(r.bytes / 1e9, 2) : '-', fixed(r.m.seconds, 2), fixed(gbps, 2), percent(ratio), fixed(r.m.peakRss / 1e6, 0), notes.join(', ')];
  });
  const maxRss = Math.max(...rows.filter((r) => r.cli).map((r) => r.m.peakRss));
  verdicts.push(`peak RSS < ${TARGET_RSS / 1e6} MB in every vzdump-zfs run: ${verdict(maxRss < TARGET_RSS)} (max ${fixed(maxRss / 1e6, 0)} MB)`);

  printTable({
    title:
      `VMA codec: images ${humanBytes(imageBytes)} (drive-scsi0 ${humanBytes(size)} + drive-efidisk0 ${EFI_SIZE} B; ` +
      `${pct(mix.zeroClusters, clusters)} zero, ${pct(mix.textClusters, clusters)} text, ${pct(mix.randomClusters, clusters)} random, ` +
      `${pct(mix.mixedClusters, clusters)} mixed clusters; ${pct(mix.zeroBlocksInData, mix.dataBlocks)} of data-cluster blocks zero), ` +
      `.vma ${humanBytes(vmaBytes)}, .vma.zst ${humanBytes(zstBytes)}`,
    columns: [
      { title: 'operation' },
      { title: 'GB', align: 'right' },
      { title: 'wall s', align: 'right' },
      { title: 'GB/s', align: 'right' },
      { title: 'vs floor', align: 'right' },
      { title: 'peak RSS MB', align: 'right' },
      { title: 'targets' },
    ],
    rows: tableRows,
    footer: [
      'GB and GB/s are decimal (1e9): image bytes for create rows, uncompressed .vma bytes for the others; "vs floor" = GB/s / the floor\'s GB/s.',
      'Each row is the second of two runs (page cache warm; the cache cannot be dropped reliably here); `sync` runs between measurements.',
      'vma verify = the reader path with no disk writes (reads, validates and discards every cluster): the "extract to /dev/null" of the spec.',
      'vma runs are `node bin/vzdump-zfs vma ...` child processes (node start-up included: see the verify tiny rows); peak RSS is GNU time %M (largest single process, e.g. node, not node+zstd).',
      '"excl. start-up" = the same ratio with the wall time of the matching "verify tiny" row (node start, module load, header, decompressor start, one cluster) taken off the reader\'s time: its streaming rate.',
      'ref: zstd of the .vma stream itself, the real lower bound of create .vma.zst (GB/s counted in image bytes, like the create rows).',
      ...(opts.pveVma ? [`PVE's vma rows: ${opts.pveVma} on the same archives, for comparison (its extract writes through QEMU's block layer and flushes; no target).`] : []),
      'create and extract rows fsync their output files; the image is sparse (zero clusters are holes); the first .vma extract was compared with the images by cmp: identical.',
      `${measured} (the bench itself keeps 1-2 processes busy; a higher load means other work competed).`,
      ...verdicts.map((v) => `target: ${v}`),
    ],
  });
}
