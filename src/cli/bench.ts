/**
 * `npm run bench` entry (tsup -> dist/bench.js): `node dist/bench.js [codec|store|all] [--size 1G]`.
 *
 * Owns argument handling, the machine-facts header line and running the chosen sections in
 * order; each section (src/bench/<name>.ts) generates its data, measures and prints its own table.
 * A section is wired in by one entry in SECTIONS; `all` runs every wired one, and a failing section
 * does not stop the others. Options: `--size <n>[K|M|G|T]` (or env
 * VZBENCH_SIZE) sets the generated data size, `--tmpdir <dir>` (or env VZBENCH_TMPDIR, default
 * /var/tmp) where temp files go; it must be a real disk, not tmpfs. Exit code 2 on bad
 * arguments, 1 when a section fails. Internal: `--engine-sync ARCHIVE DIR RECORDSIZE` is the child
 * the store section times for its "pool out of the way" rows (src/bench/engine.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runCodecBench } from '../bench/codec';
import { ENGINE_SYNC_ARG, runEngineSync } from '../bench/engine';
import { machineLine, type BenchOptions } from '../bench/measure';
import { parseSize } from '../util/format';

type Section = (opts: BenchOptions) => Promise<void>;

/**
 * Benchmark sections, run in this order by `all`; undefined = not part of this build. The store
 * section is wired by this entry: `store: (o) => import('../bench/store').then((m) => m.runStoreBench(o)),`
 */
const SECTIONS: Record<string, Section | undefined> = {
  codec: runCodecBench,
  store: (o) => import('../bench/store').then((m) => m.runStoreBench(o)),
};

const USAGE = `usage: node dist/bench.js [${[...Object.keys(SECTIONS), 'all'].join('|')}] [--size <n>[K|M|G]] [--tmpdir <dir>] [--pve-vma <path>]`;

function usage(message: string): never {
  process.stderr.write(`bench: ${message}\n${USAGE}\n`);
  process.exit(2);
}

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === ENGINE_SYNC_ARG) return engineSync(argv.slice(1));
  let section = 'all';
  let sizeArg = process.env.VZBENCH_SIZE;
  let tmpRoot = process.env.VZBENCH_TMPDIR || '/var/tmp';
  let pveVma = process.env.VZBENCH_PVE_VMA || undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--size' || a === '--tmpdir' || a === '--pve-vma') {
      const v = argv[++i];
      if (v === undefined) usage(`option '${a}' needs a value`);
      if (a === '--size') sizeArg = v;
      else if (a === '--tmpdir') tmpRoot = v;
      else pveVma = v;
    } else if (a.startsWith('--size=')) sizeArg = a.slice('--size='.length);
    else if (a.startsWith('--tmpdir=')) tmpRoot = a.slice('--tmpdir='.length);
    else if (a.startsWith('--pve-vma=')) pveVma = a.slice('--pve-vma='.length);
    else if (a === '-h' || a === '--help') {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    } else if (a === 'all' || a in SECTIONS) section = a;
    else usage(`unknown argument '${a}'`);
  }
  let size: number | undefined;
  if (sizeArg !== undefined && sizeArg !== '') {
    size = parseSize(sizeArg);
    if (size === undefined) usage(`invalid size '${sizeArg}' - expected e.g. 4G, 512M or a byte count`);
  }
  if (pveVma !== undefined) {
    try {
      fs.accessSync(pveVma, fs.constants.X_OK);
    } catch {
      usage(`--pve-vma '${pveVma}' is not an executable file`);
    }
  }
  const opts: BenchOptions = { size, tmpRoot, cli: [process.execPath, path.join(__dirname, '..', 'bin', 'vzdump-zfs')], self: [process.execPath, __filename], pveVma };
  if (section !== 'all' && SECTIONS[section] === undefined) usage(`section '${section}' is not part of this build`);
  const run = section === 'all' ? Object.keys(SECTIONS).filter((k) => SECTIONS[k] !== undefined) : [section];

  process.stdout.write(`${machineLine()}\n`);
  let failed = 0;
  for (const name of run) {
    process.stdout.write('\n');
    try {
      await SECTIONS[name]!(opts);
    } catch (err) {
      process.stderr.write(`bench: section '${name}' failed: ${(err as Error).message}\n`);
      failed++;
    }
  }
  return failed > 0 ? 1 : 0;
}

/** The store bench's child mode: `--engine-sync ARCHIVE DIR RECORDSIZE` (src/bench/engine.ts). */
async function engineSync(args: string[]): Promise<number> {
  const [archive, dir, recordSize] = args;
  if (args.length !== 3 || !/^\d+$/.test(recordSize!)) usage(`${ENGINE_SYNC_ARG} takes ARCHIVE DIR RECORDSIZE (bytes)`);
  try {
    await runEngineSync(archive!, dir!, Number(recordSize));
    return 0;
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n`);
    return 1;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
