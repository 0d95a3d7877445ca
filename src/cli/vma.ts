/**
 * `vzdump-zfs vma list|config|verify|extract|create`: the arguments and output of Proxmox's `vma`
 * tool (vma-format.md §5, §6), on top of the src/vma codec and src/archive compression stages.
 *
 * Owns: argument handling, output text, and the file side of extract (sparse positional writes,
 * tmp-disk-*.raw renamed on success, or with -r the targets a map names, written in place) and
 * create (images read in 64 KiB clusters, O_EXCL output).
 * Leaves the format to src/vma and (de)compression to src/archive.
 * The -v text is the reference's (vma-report.ts); scripts/pve-vma-crosscheck.sh compares both tools.
 * Differences from `vma`: ARCHIVE may be compressed (decompressor chosen by its name; `-` is an
 * uncompressed stream on stdin); verify and extract also fail on missing clusters (verify
 * `--allow-missing` matches the reference); extract rejects unsafe config/device names and removes
 * its tmp-disk files on failure; a `vmstate` stream is extracted verbatim to vmstate.bin (the
 * reference keeps only its non-zero blocks); create reads raw images only (regular files), and
 * -r writes raw targets only (format=raw; throttling and cache options are accepted, not applied).
 * Errors are one line `vzdump-zfs: <message>` and a non-zero exit (common.ts `action`).
 */
import { Command } from 'commander';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { compress, openArchive } from '../archive/compression';
import { readArchiveRecords } from '../ingest/archive-records';
import { compressionFromFileName } from '../archive/names';
import { ConflictError, IoError, NotFoundError, UnsafeNameError, UsageError, stoppedError } from '../errors';
import { localParts } from '../util/localtime';
import { assertSafeName, clusterCount, readVma, writeVma } from '../vma';
import { BLOCK_SIZE as BLOCK, BLOCKS_PER_CLUSTER, CLUSTER_SIZE as CLUSTER, ZERO_BLOCK } from '../vma/constants';
import { ChunkPool } from '../archive/chunk-pool';
import { imageClusters } from '../restore/image-clusters';
import { writeFully } from '../util/io';
import type { VmaClusterData, VmaConfig, VmaHeader } from '../vma';
import { action, makeLogger, parseThreads, Progress, stdoutCarriesData, withStopSignals } from './common';
import { CreateReport, ReadReport } from './vma-report';
import { parseMap, type MapEntry, type MapTarget } from './vma-map';

const MAX_PENDING_WRITES = 16;
const DEFAULT_CONFIG = 'qemu-server.conf';

// ---------------------------------------------------------------------------------------------
// output helpers

/** Write to stdout and wait until it was handed to the OS (backpressure for large outputs). */
function out(data: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(data, (err) => (err ? reject(err) : resolve()));
  });
}

const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** C `ctime()` without the trailing newline, in the process's local time zone (TZ). */
export function cCtime(epoch: number, timeZone?: string): string {
  const p = localParts(epoch, timeZone);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${WEEKDAYS[p.weekday]} ${MONTHS[p.month - 1]} ${String(p.day).padStart(2, ' ')} ${two(p.hour)}:${two(p.minute)}:${two(p.second)} ${p.year}`;
}

/** What `vma list` prints for a header. */
export function listText(h: VmaHeader): string {
  let s = '';
  for (const c of h.configs) s += `CFG: size: ${c.data.length} name: ${c.name}\n`;
  for (const d of h.devices) {
    s += d.name === 'vmstate' ? `VMSTATE: dev_id=${d.id} memory: ${d.size}\n` : `DEV: dev_id=${d.id} size: ${d.size} devname: ${d.name}\n`;
  }
  return s + `CTIME: ${cCtime(h.ctime)}\n`;
}

// ---------------------------------------------------------------------------------------------
// input

function labelOf(archive: string): string {
  return archive === '-' ? '(stdin)' : archive;
}

/** Reads only the header of ARCHIVE (`-` = stdin), then stops (the decompressor is killed, the rest is never read). */
async function readHeader(archive: string): Promise<VmaHeader> {
  const label = labelOf(archive);
  for await (const rec of readVma(openArchive(archive, { label }), { label: `'${label}'`, checkComplete: false })) {
    if (rec.type === 'header') return rec.header;
  }
  throw new IoError(`'${labelOf(archive)}': no vma header`, archive);
}

/** All clusters of these devices (what the terminal progress counts). */
function allClusters(devices: readonly { size: number }[]): number {
  return devices.reduce((n, d) => n + clusterCount(d.size), 0);
}

// ---------------------------------------------------------------------------------------------
// list, config, verify

async function listCommand(archive: string): Promise<void> {
  await out(listText(await readHeader(archive)));
}

async function configCommand(archive: string, opts: { config?: string }): Promise<number> {
  const name = opts.config ?? DEFAULT_CONFIG;
  const h = await readHeader(archive);
  const cfg = h.configs.find((c) => c.name === name);
  if (!cfg) {
    throw new NotFoundError(
      `'${labelOf(archive)}': unable to find configuration data '${name}' (has: ${h.configs.map((c) => c.name).join(', ') || 'none'})`,
      'config',
      name,
    );
  }
  await out(cfg.data);
  return 0;
}

async function verifyCommand(archive: string, opts: { verbose?: boolean; allowMissing?: boolean }): Promise<void> {
  let report: ReadReport | undefined;
  let total = 0;
  const progress = new Progress(`verify '${labelOf(archive)}'`, !opts.verbose);
  try {
    // nothing here keeps a record's blocks
    for await (const rec of readArchiveRecords(archive, { label: labelOf(archive), checkComplete: !opts.allowMissing })) {
      if (rec.type === 'header') {
        total = allClusters(rec.header.devices);
        report = new ReadReport(rec.header.devices, () => true); // verify reads every stream, vmstate too
        if (opts.verbose) await out(listText(rec.header));
        continue;
      }
      const line = report!.cluster(rec.devId, rec.cluster, rec.mask);
      if (opts.verbose && line) await out(line);
      progress.update(report!.clustersRead, total);
    }
  } finally {
    progress.done();
  }
  if (opts.verbose && report) await out(report.summary());
}

// ---------------------------------------------------------------------------------------------
// extract

interface Target {
  name: string;
  size: number;
  /** where the disk is written: our tmp-disk-*.raw, or a target named by the -r map */
  path: string;
  /** for our own tmp file: its name once complete (it is removed on failure); none for map targets */
  final?: string;
  fh: fs.promises.FileHandle;
  /** the target may hold old data: write whole clusters, zeros too (map `1:`) */
  writeZero: boolean;
}

/** A cluster as the device sees it: stored blocks, zeros for absent ones; `into` is 64 KiB. */
function wholeCluster(mask: number, blocks: Buffer, into: Buffer): Buffer {
  let src = 0;
  for (let j = 0; j < BLOCKS_PER_CLUSTER; j++) {
    const at = j * BLOCK;
    if (mask & (1 << j)) {
      blocks.copy(into, at, src, src + BLOCK);
      src += BLOCK;
    } else {
      into.fill(0, at, at + BLOCK);
    }
  }
  return into;
}

/** The size of a map target: a regular file's length, or a block device's (from sysfs). */
async function targetSize(file: string, fh: fs.promises.FileHandle): Promise<number> {
  const st = await fh.stat();
  if (st.isFile()) return st.size;
  if (st.isBlockDevice()) {
    // Linux's dev_t: major in bits 8-19 and 32-43, minor in bits 0-7 and 20-31
    const rdev = BigInt(st.rdev);
    const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
    const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
    const sysfs = `/sys/dev/block/${major}:${minor}/size`;
    try {
      return Number(await fs.promises.readFile(sysfs, 'utf8')) * 512;
    } catch (err) {
      throw new IoError(`'${file}': cannot read the block device's size from ${sysfs} - ${(err as Error).message}`, file, { cause: err });
    }
  }
  throw new IoError(`'${file}': not a regular file or block device`, file);
}

/** Opens a -r map target for `d`, checked like vma.c: raw, and at most 4 MiB larger than the disk. */
async function openMapTarget(d: { name: string; size: number }, e: MapTarget, where: string): Promise<Target> {
  const raw = e.format === undefined ? e.path.endsWith('.raw') || e.path.startsWith('/dev/') : e.format === 'raw';
  if (!raw) {
    throw new UsageError(
      e.format === undefined
        ? `${where}: no format for '${e.path}' (device '${d.name}') - give format=raw`
        : `${where}: format '${e.format}' of '${e.path}' (device '${d.name}') is not supported - only raw`,
    );
  }
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(e.path, 'r+');
  } catch (err) {
    throw new IoError(`can't open file '${e.path}' for device '${d.name}' - ${(err as Error).message}`, e.path, { cause: err });
  }
  try {
    const size = await targetSize(e.path, fh);
    if (size < d.size || size - d.size > 4 * 1024 * 1024) {
      throw new IoError(`'${e.path}': unexpected size ${size} for device '${d.name}' of ${d.size} bytes (it may be up to 4 MiB larger, not smaller)`, e.path);
    }
  } catch (err) {
    await fh.close();
    throw err;
  }
  return { name: d.name, size: d.size, path: e.path, fh, writeZero: e.writeZero };
}

/** Reads the -r map (a FIFO or a file) up to its end line. */
async function readMapFile(file: string): Promise<Map<string, MapEntry>> {
  const input = fs.createReadStream(file, { encoding: 'utf8' });
  const lines = readline.createInterface({ input, crlfDelay: Infinity });
  try {
    return await parseMap(lines, `map '${file}'`);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new IoError(`unable to read map '${file}' - ${(err as Error).message}`, file, { cause: err });
  } finally {
    lines.close();
    input.destroy();
  }
}

/** Writes a cluster's stored blocks at their device offsets, skipping all-zero blocks (the file is sparse). */
function clusterWrites(t: Target, cluster: number, mask: number, blocks: Buffer, write: (buf: Buffer, pos: number) => void): void {
  const base = cluster * CLUSTER;
  let src = 0;
  let runStart = -1; // byte offset in `blocks` where the current run of non-zero blocks starts
  let runPos = 0;
  const flush = (end: number) => {
    if (runStart < 0) return;
    const len = Math.min(end - runStart, t.size - runPos);
    if (len > 0) write(blocks.subarray(runStart, runStart + len), runPos);
    runStart = -1;
  };
  for (let j = 0; j < BLOCKS_PER_CLUSTER; j++) {
    if (!(mask & (1 << j))) {
      flush(src);
      continue;
    }
    const block = blocks.subarray(src, src + BLOCK);
    if (block.equals(ZERO_BLOCK)) {
      flush(src);
    } else if (runStart < 0) {
      runStart = src;
      runPos = base + j * BLOCK;
    }
    src += BLOCK;
  }
  flush(src);
}

async function extractCommand(archive: string, dir: string, opts: { verbose?: boolean; drives?: string; readmap?: string }): Promise<void> {
  const label = labelOf(archive);
  const wanted = opts.drives ? new Set(opts.drives.split(',').filter((s) => s !== '')) : undefined;
  const targets: (Target | undefined)[] = [];
  const opened: Target[] = [];
  let firstWriteError: unknown;
  let pending: Promise<void>[] = [];
  let report: ReadReport | undefined;
  let total = 0;
  const progress = new Progress(`extract '${label}'`, !opts.verbose);

  // A queued write owns a copy of its run (at most one cluster) in a buffer that goes round: the
  // reader reuses its chunks as soon as the next record is asked for, so neither side allocates
  // per cluster and memory stays flat (read chunks + MAX_PENDING_WRITES clusters).
  // in flight at most: MAX_PENDING_WRITES, plus the runs of one cluster (a run per stored block at worst)
  const writeBuffers = new ChunkPool(CLUSTER, MAX_PENDING_WRITES + BLOCKS_PER_CLUSTER);
  const scratch = Buffer.alloc(CLUSTER); // a whole cluster for `1:` map targets; write() copies it at once
  const write = (t: Target, run: Buffer, pos: number) => {
    const own = writeBuffers.get();
    run.copy(own);
    const p = writeFully(t.fh, own.subarray(0, run.length), pos).then(
      () => writeBuffers.release(own),
      (err: NodeJS.ErrnoException) => {
        firstWriteError ??= new IoError(`'${t.path}': write at offset ${pos} failed - ${err.message}`, t.path, { cause: err });
      },
    );
    pending.push(p);
  };
  const drain = async (keep: number) => {
    while (pending.length > keep) await pending.shift();
    if (firstWriteError) throw firstWriteError;
  };

  let ok = false;
  try {
    for await (const rec of readArchiveRecords(archive, { label })) {
      if (rec.type === 'header') {
        const h = rec.header;
        total = allClusters(h.devices);
        // the reference's 100 %: its disks, also those -d skips (it registers them as skipped), not vmstate
        report = new ReadReport(h.devices, (d) => d.name !== 'vmstate');
        // check every name before touching the file system
        for (const c of h.configs) assertSafeName(c.name, `config name in '${label}'`);
        const fileOf = (d: { name: string }) => (d.name === 'vmstate' ? 'vmstate.bin' : `disk-${d.name}.raw`);
        const reserved = new Set<string>();
        for (const d of h.devices) {
          assertSafeName(d.name, `device name in '${label}'`);
          reserved.add(fileOf(d)).add(`tmp-${fileOf(d)}`);
        }
        for (const c of h.configs) {
          if (reserved.has(c.name)) throw new UnsafeNameError(`unsafe config name in '${label}' '${c.name}' - collides with a disk file of the archive`, c.name);
        }
        if (wanted) {
          for (const w of wanted) {
            if (!h.devices.some((d) => d.name === w)) throw new NotFoundError(`'${label}': no device '${w}' in the archive`, 'device', w);
          }
        }
        try {
          await fs.promises.mkdir(dir);
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          if (e.code === 'EEXIST') throw new ConflictError(`unable to create target directory '${dir}' - it already exists`, dir, { cause: err });
          throw new IoError(`unable to create target directory '${dir}' - ${e.message}`, dir, { cause: err });
        }
        const seenConfigs = new Set<string>();
        for (const c of h.configs) {
          if (seenConfigs.has(c.name)) continue; // duplicate names: the first one wins, as `vma config -c` does
          seenConfigs.add(c.name);
          await fs.promises.writeFile(path.join(dir, c.name), c.data, { flag: 'wx' });
        }
        // -r: the list output, then the map names each disk's target (written in place, as vma does)
        let map: Map<string, MapEntry> | undefined;
        if (opts.readmap !== undefined) {
          await out(listText(h));
          map = await readMapFile(opts.readmap);
        }
        let devinfo = '';
        for (const d of h.devices) {
          if (wanted && !wanted.has(d.name)) continue;
          if (map && d.name !== 'vmstate') {
            const e = map.get(d.name);
            if (e === undefined) throw new NotFoundError(`map '${opts.readmap}': no device name mapping for ${d.name}`, 'device', d.name);
            if ('skip' in e) continue;
            const t = await openMapTarget(d, e, `map '${opts.readmap}'`);
            opened.push(t);
            targets[d.id] = t;
            continue;
          }
          const tmp = path.join(dir, `tmp-${fileOf(d)}`);
          const fh = await fs.promises.open(tmp, 'wx');
          const t: Target = { name: d.name, size: d.size, path: tmp, final: path.join(dir, fileOf(d)), fh, writeZero: false };
          opened.push(t);
          targets[d.id] = t;
          await fh.truncate(d.size);
          if (d.name !== 'vmstate') devinfo += `DEVINFO ${tmp} ${d.size}\n`;
        }
        await out(devinfo);
        continue;
      }
      const line = report!.cluster(rec.devId, rec.cluster, rec.mask);
      if (opts.verbose && line) await out(line);
      progress.update(report!.clustersRead, total);
      const t = targets[rec.devId];
      if (t === undefined) continue;
      if (t.writeZero) {
        // the whole cluster, up to the device's end: the target may hold anything
        const base = rec.cluster * CLUSTER;
        write(t, wholeCluster(rec.mask, rec.blocks, scratch).subarray(0, Math.min(CLUSTER, t.size - base)), base);
      } else if (rec.mask !== 0) {
        clusterWrites(t, rec.cluster, rec.mask, rec.blocks, (buf, pos) => write(t, buf, pos));
      }
      if (pending.length > MAX_PENDING_WRITES) await drain(MAX_PENDING_WRITES / 2);
    }
    await drain(0);
    // on disk before the files get their final names, as vma extract flushes its targets
    for (const t of opened) await t.fh.sync();
    for (const t of opened) await t.fh.close();
    for (const t of opened) if (t.final !== undefined) await fs.promises.rename(t.path, t.final);
    ok = true;
  } finally {
    progress.done();
    if (!ok) {
      await Promise.allSettled(pending);
      pending = [];
      for (const t of opened) {
        await t.fh.close().catch(() => undefined);
        if (t.final !== undefined) await fs.promises.unlink(t.path).catch(() => undefined); // our own tmp file, not a map target
      }
    }
  }
  if (opts.verbose && report) await out(report.summary());
}

// ---------------------------------------------------------------------------------------------
// create

interface DiskSpec {
  name: string;
  file: string;
  size: number;
  fileSize: number;
}

/** Parse `[format=<fmt>:]<devname>=<path>` or `<path>` (devname `disk<index>`), as vma create does. */
function parseDiskSpec(spec: string, index: number, requireFormat: boolean): { name: string; file: string } {
  let rest = spec;
  const fm = /^format=([^:]*):/.exec(rest);
  if (fm) {
    if (fm[1] !== 'raw') throw new UsageError(`unsupported image format '${fm[1]}' for device '${spec}' - only format=raw is supported`);
    rest = rest.slice(fm[0].length);
  } else if (requireFormat) {
    throw new UsageError(`no format specified for device '${spec}' - use '-d format=raw:${spec}'`);
  }
  const eq = rest.indexOf('=');
  const name = eq >= 0 ? rest.slice(0, eq) : `disk${index}`;
  const file = eq >= 0 ? rest.slice(eq + 1) : rest;
  if (file === '') throw new UsageError(`no image path in device '${spec}'`);
  assertSafeName(name, 'device name');
  return { name, file };
}

/** A random (version 4) uuid as 16 raw bytes, like libuuid's uuid_generate. */
function randomUuid(): Buffer {
  return Buffer.from(crypto.randomUUID().replace(/-/g, ''), 'hex');
}

async function createCommand(
  output: string,
  positional: string[],
  opts: { config: string[]; device: string[]; verbose?: boolean; threads?: string },
  signal?: AbortSignal,
): Promise<void> {
  if (positional.length > 0 && opts.device.length > 0) {
    throw new UsageError(`unexpected extra argument '${positional[0]}' - specify all devices via '-d'`);
  }
  const compression = compressionFromFileName(output);
  const threads = opts.threads === undefined ? 1 : parseThreads(opts.threads);

  const configs: VmaConfig[] = [];
  for (const file of opts.config) {
    let data: Buffer;
    try {
      data = await fs.promises.readFile(file);
    } catch (err) {
      throw new IoError(`unable to read config file '${file}' - ${(err as Error).message}`, file, { cause: err });
    }
    configs.push({ name: path.basename(file), data });
  }

  const specs = opts.device.length > 0 ? opts.device.map((s, i) => parseDiskSpec(s, i, true)) : positional.map((s, i) => parseDiskSpec(s, i, false));
  const disks: DiskSpec[] = [];
  for (const s of specs) {
    if (disks.some((d) => d.name === s.name)) throw new UsageError(`device name '${s.name}' given twice`);
    let st: fs.Stats;
    try {
      st = await fs.promises.stat(s.file);
    } catch (err) {
      throw new IoError(`unable to open image '${s.file}' - ${(err as Error).message}`, s.file, { cause: err });
    }
    if (!st.isFile()) throw new IoError(`image '${s.file}' is not a regular file - only raw image files are supported`, s.file);
    if (st.size === 0) throw new IoError(`image '${s.file}' is empty`, s.file);
    disks.push({ ...s, fileSize: st.size, size: Math.ceil(st.size / 512) * 512 });
  }

  const toStdout = output === '-';
  if (toStdout) stdoutCarriesData();
  let fh: fs.promises.FileHandle | undefined;
  if (!toStdout) {
    try {
      fh = await fs.promises.open(output, 'wx');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EEXIST') throw new ConflictError(`'${output}': already exists`, output, { cause: err });
      throw new IoError(`unable to create '${output}' - ${e.message}`, output, { cause: err });
    }
  }

  const totalClusters = allClusters(disks);
  const progress = new Progress(`create '${output}'`, !opts.verbose);
  const report = new CreateReport(disks);
  let done = 0;
  async function* counted(): AsyncGenerator<VmaClusterData> {
    const first = opts.verbose ? report.begin() : undefined;
    if (first) process.stderr.write(first);
    for await (const c of imageClusters(
      disks.map((d) => ({ path: d.file, size: d.size })),
      { sizeCheck: 'pad' },
    )) {
      if (opts.verbose) {
        // per-image zero statistics as vma create -v prints them; the writer does its own zero test
        let zeros = 0;
        for (let b = 0; b < c.data.length; b += BLOCK) {
          const blk = c.data.subarray(b, Math.min(c.data.length, b + BLOCK));
          if (blk.equals(ZERO_BLOCK.subarray(0, blk.length))) zeros += blk.length;
        }
        const line = report.cluster(c.devId - 1, c.data.length, zeros);
        if (line) process.stderr.write(line);
      }
      yield c;
      progress.update(++done, totalClusters);
    }
  }

  let ok = false;
  try {
    const vma = writeVma(
      { uuid: randomUuid(), ctime: Math.floor(Date.now() / 1000), configs, devices: disks.map((d) => ({ name: d.name, size: d.size })) },
      counted(),
    );
    let outPos = 0;
    for await (const chunk of compress(vma, compression, { threads, label: output, signal })) {
      if (fh) {
        await writeFully(fh, chunk, outPos);
        outPos += chunk.length;
      } else {
        await out(chunk);
      }
    }
    if (fh) {
      await fh.sync();
      await fh.close();
      fh = undefined;
    }
    ok = true;
  } catch (e) {
    if (signal?.aborted) throw stoppedError(`vma create '${output}'`, e);
    throw e;
  } finally {
    progress.done();
    if (!ok && !toStdout) {
      await fh?.close().catch(() => undefined);
      await fs.promises.unlink(output).catch(() => undefined);
    }
  }
  if (opts.verbose) {
    process.stderr.write(report.imageLines());
  }
}

// ---------------------------------------------------------------------------------------------

const collect = (v: string, prev: string[]) => [...prev, v];

export function registerVmaCommands(program: Command): void {
  const vma = program
    .command('vma')
    .description("read and write Proxmox VMA archives, compatible with PVE's 'vma' tool (ARCHIVE may be .vma, .vma.zst, .vma.lzo, .vma.gz or - for stdin)");

  vma
    .command('list')
    .description('print the configs, devices and creation time of an archive')
    .argument('<archive>')
    .action(action(async (archive: string) => listCommand(archive)));

  vma
    .command('config')
    .description('print a config file stored in an archive (default qemu-server.conf)')
    .argument('<archive>')
    .option('-c, --config <name>', 'config name', DEFAULT_CONFIG)
    .action(action(async (archive: string, o: { config?: string }) => configCommand(archive, o)));

  vma
    .command('verify')
    .description('check every header, extent and cluster of an archive, including that no cluster is missing or duplicated')
    .argument('<archive>')
    .option('-v, --verbose', 'print the list output and a summary')
    .option('--allow-missing', "accept missing clusters, like PVE's 'vma verify'")
    .action(action(async (archive: string, o: { verbose?: boolean; allowMissing?: boolean }) => verifyCommand(archive, o)));

  vma
    .command('extract')
    .description('extract configs and raw disk images (disk-<devname>.raw) into a new directory')
    .argument('<archive>')
    .argument('<dir>', 'target directory; must not exist')
    .option('-v, --verbose', 'print a summary after the DEVINFO lines')
    .option('-d, --drives <list>', 'extract only these devices (comma-separated device names)')
    .option('-r, --readmap <map>', "write each disk to the target the map (a FIFO or file, qmrestore's format) names, in place")
    .action(action(async (archive: string, dir: string, o: { verbose?: boolean; drives?: string; readmap?: string }) => extractCommand(archive, dir, o)));

  vma
    .command('create')
    .description('create an archive from config files and raw images (compressed when OUTPUT ends in .zst, .lzo or .gz)')
    .argument('<output>', 'archive to create; must not exist')
    .argument('[devices...]', 'old syntax: [<devname>=]<image> (devname defaults to disk<N>)')
    .option('-c, --config <file>', 'config file to store (repeatable; the stored name is its basename)', collect, [] as string[])
    .option('-d, --device <spec>', 'format=raw:<devname>=<image> (repeatable)', collect, [] as string[])
    .option('-v, --verbose', 'print per-image statistics')
    .option('--threads <n>', 'compressor threads (zstd, pigz)', '1')
    .action(
      action(async (output: string, devices: string[], o: { config: string[]; device: string[]; verbose?: boolean; threads?: string }) =>
        withStopSignals(makeLogger(), 'stopping and removing the partial output', (signal) => createCommand(output, devices, o, signal)),
      ),
    );
}
