/**
 * Measuring harness for `npm run bench`: runs a command or a two-stage pipeline under GNU time
 * (`/usr/bin/time -f %M`) and returns its wall time and peak RSS; plus the machine facts line
 * and the options every bench section receives.
 *
 * Owns process spawning for the benchmarks only. Commands are argv arrays; a pipeline is one
 * `bash -c` with a fixed script whose stages arrive as positional arguments (never interpolated).
 * Guarantees: wall time is measured around the whole child (start-up included); peak RSS is GNU
 * time's %M, i.e. the largest resident set of any single process of the measured tree (Linux
 * folds reaped children's maximum into the parent's), not a sum; a non-zero exit or a signal is
 * a VzError carrying the command and its stderr tail. Leaves what to measure to the sections.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { VzError, stderrTail } from '../errors';

/** What each bench section (codec.ts, store.ts) receives from src/cli/bench.ts. */
export interface BenchOptions {
  /** bytes of the generated test data (`--size`, env VZBENCH_SIZE); undefined = the section's default */
  size?: number;
  /** where temp dirs are made: a real disk, not tmpfs (default /var/tmp, env VZBENCH_TMPDIR) */
  tmpRoot: string;
  /** argv prefix that runs the real CLI, e.g. [process.execPath, '<repo>/bin/vzdump-zfs'] */
  cli: string[];
  /** argv prefix that runs dist/bench.js itself, for its internal child modes (src/bench/engine.ts) */
  self: string[];
  /** PVE's own `vma` binary (`--pve-vma`, env VZBENCH_PVE_VMA): the codec section adds its rows */
  pveVma?: string;
}

export interface Measurement {
  /** wall seconds, from spawn to exit */
  seconds: number;
  /** peak resident set in bytes (GNU time %M, largest single process of the tree) */
  peakRss: number;
  /** user + system CPU seconds of the whole tree (GNU time %U + %S, children included) */
  cpuSeconds: number;
}

export interface RunOptions {
  cwd?: string;
  /** where the command's stdout goes: 'null' (/dev/null, the default) or a file path to create */
  stdout?: 'null' | { file: string };
}

const TIME = '/usr/bin/time';
const MARK = 'VZBENCH-TIME';
const STDERR_KEEP = 64 * 1024;

/** Runs `argv` under GNU time; resolves with wall time and peak RSS, rejects on failure. */
export function measureCommand(argv: string[], opts: RunOptions = {}): Promise<Measurement> {
  return new Promise((resolve, reject) => {
    let outFd: number | undefined;
    if (opts.stdout !== undefined && opts.stdout !== 'null') outFd = fs.openSync(opts.stdout.file, 'wx');
    const shown = argv.join(' ');
    const start = process.hrtime.bigint();
    const child = spawn(TIME, ['-f', `${MARK} %e %M %U %S`, '--', ...argv], {
      cwd: opts.cwd,
      stdio: ['ignore', outFd ?? 'ignore', 'pipe'],
    });
    if (outFd !== undefined) fs.closeSync(outFd);
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (s: string) => {
      stderr += s;
      if (stderr.length > 2 * STDERR_KEEP) stderr = stderr.slice(stderr.length - STDERR_KEEP);
    });
    child.once('error', (err) => reject(new VzError(`cannot run '${TIME}': ${err.message} - apt-get install time`, { cause: err })));
    child.once('close', (code, sig) => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      const m = new RegExp(`${MARK} (\\S+) (\\d+) (\\S+) (\\S+)\\s*$`).exec(stderr);
      const rest = m ? stderr.slice(0, m.index) : stderr;
      if (code !== 0 || sig !== null || !m) {
        const how = sig ? `killed by signal ${sig}` : code !== 0 ? `exit ${code}` : 'no GNU time report';
        const tail = stderrTail(rest.replace(/Command exited with non-zero status \d+\s*$/, ''), 1000);
        reject(new VzError(`'${shown}' failed (${how})${tail ? `: ${tail.replace(/\s*\n\s*/g, ' | ')}` : ''}`));
        return;
      }
      resolve({ seconds, peakRss: Number(m[2]) * 1024, cpuSeconds: Number(m[3]) + Number(m[4]) });
    });
  });
}

/** The fixed pipeline script: $1 = number of argv words of the first stage, then both stages. */
const PIPE_SCRIPT = 'set -o pipefail; n=$1; shift; "${@:1:n}" | "${@:n+1}"';

/** Runs `left | right` (right's stdout per `opts.stdout`) under GNU time, as one measurement. */
export function measurePipeline(left: string[], right: string[], opts: RunOptions = {}): Promise<Measurement> {
  return measureCommand(['bash', '-c', PIPE_SCRIPT, 'bash', String(left.length), ...left, ...right], opts);
}

/** Runs `fn` twice and returns the second result: the first run warms the page cache. */
export async function warmRun<T>(fn: () => Promise<T>, between?: () => Promise<void> | void): Promise<T> {
  await fn();
  await between?.();
  return fn();
}

/** Removes a file or directory tree if it exists. */
export function rmrf(p: string): void {
  fs.rmSync(p, { recursive: true, force: true });
}

/** Flushes dirty pages (e.g. an extract's output) so write-back does not slow the next measurement. */
export function syncDisks(): void {
  spawnSync('sync', [], { stdio: 'ignore' });
}

/** The 1, 5 and 15 minute load averages, e.g. 'load 0.52 0.31 0.20' (other work skews the numbers). */
export function loadLine(): string {
  return `load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`;
}

/** One line of machine facts: cpu model, cores, memory, node and zstd versions, current load. */
export function machineLine(): string {
  const cpus = os.cpus();
  const model = cpus[0]?.model.trim() ?? 'unknown cpu';
  const zstd = spawnSync('zstd', ['--version'], { encoding: 'utf8' });
  const zv = /v(\d+\.\d+\.\d+)/.exec(zstd.stdout ?? '')?.[1] ?? 'not found';
  const mem = (os.totalmem() / 2 ** 30).toFixed(1);
  return `machine: ${model}, ${cpus.length} cores, ${mem} GiB RAM, node ${process.version}, zstd ${zv}, ${os.type()} ${os.release()}, ${loadLine()}`;
}
