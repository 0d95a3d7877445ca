/**
 * The one door to the `zfs` and `zpool` command-line tools (the shape of pve-storage's `zfs_request`).
 *
 * Owns: spawning `zfs`/`zpool` with argv arrays (never a shell), parsing their scripting output
 * (`-H`, tab-separated; numbers from `zfs get -Hp`), turning failures into {@link ZfsCommandError}
 * (argv, exit code, stderr without the usage text), retrying "dataset is busy" on destroy/unmount,
 * and probing platform features. Leaves the dataset/snapshot layout to `store.ts`.
 *
 * Portability (zfs-fuse 0.7 and OpenZFS 2.1/2.3 both accept every form used here):
 * - `zfs list -p` does not exist on zfs-fuse, so every listing goes through `zfs get -Hp -r [-d N]
 *   -o name,property,value,source`, which prints exact numbers on both; `zfs get -t` does not exist
 *   on zfs-fuse either, so rows are filtered by the `type` property instead.
 * - `zfs set` takes no `--` on zfs-fuse and OpenZFS 2.1 (no getopt there) and only one
 *   property=value on zfs-fuse: {@link Zfs.set} runs one `zfs set` per property. Every other
 *   subcommand gets `--` before dataset names.
 * - `.zfs/snapshot` is missing on zfs-fuse (so are `written` and `zfs holds`, which nothing here
 *   uses): {@link Zfs.features} probes it.
 * - A just-unmounted or just-read dataset can be "busy" for a moment under FUSE: destroy, unmount
 *   and `zpool destroy` retry with backoff (a few seconds at most) before failing.
 * Guarantees: no command output is parsed by guesswork; a line with the wrong number of fields is
 * an error. Values containing newlines are not supported by the parser (store.ts encodes its values).
 */

import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ZfsCommandError, stderrTail } from '../errors';

export interface ZfsOptions {
  /** Path of the `zfs` binary (default `zfs`, found through PATH). */
  zfs?: string;
  /** Path of the `zpool` binary (default `zpool`). */
  zpool?: string;
  /** Called with the full argv (binary first) before each command runs, for `--verbose` logs. */
  onCommand?: (argv: string[]) => void;
  /** How long destroy/unmount keep retrying "dataset is busy" (default 8000 ms). */
  busyRetryMs?: number;
}

export interface RunOptions {
  /** Data written to the child's stdin (stdin is closed right after). */
  input?: string | Buffer;
  signal?: AbortSignal;
}

export interface ZfsFeatures {
  /** `<mountpoint>/.zfs/snapshot` when it is a reachable directory (OpenZFS; not zfs-fuse), else undefined. */
  snapdir: string | undefined;
}

/** One row of `zfs get -H -o name,property,value,source`. */
export interface PropRow {
  name: string;
  property: string;
  value: string;
  /** `local`, `default`, `inherited from X`, `received`, `temporary` or `-` (none). */
  source: string;
}

export type ListType = 'filesystem' | 'snapshot' | 'volume' | 'all';

const STDERR_KEEP = 32 * 1024;
const BUSY_RE = /\bbusy\b/i;

/** Runs zfs/zpool. One instance per configured binary pair; cheap to create. */
export class Zfs {
  readonly zfsBin: string;
  readonly zpoolBin: string;
  private readonly onCommand?: (argv: string[]) => void;
  private readonly busyRetryMs: number;
  private readonly featureCache = new Map<string, Promise<ZfsFeatures>>();

  constructor(opts: ZfsOptions = {}) {
    this.zfsBin = opts.zfs ?? 'zfs';
    this.zpoolBin = opts.zpool ?? 'zpool';
    this.onCommand = opts.onCommand;
    this.busyRetryMs = opts.busyRetryMs ?? 8000;
  }

  // ---------------------------------------------------------------- running commands

  /** Runs `zfs <args>`; resolves with stdout, rejects with ZfsCommandError. */
  run(args: string[], opts: RunOptions = {}): Promise<string> {
    return this.exec(this.zfsBin, args, opts);
  }

  /** Runs `zpool <args>`; resolves with stdout, rejects with ZfsCommandError. */
  runZpool(args: string[], opts: RunOptions = {}): Promise<string> {
    return this.exec(this.zpoolBin, args, opts);
  }

  /** Runs a command; stdout is collected and resolved, or handed to `opts.onStdout` chunk by chunk (then '' resolves). */
  private exec(bin: string, args: string[], opts: RunOptions & { onStdout?: (b: Buffer) => void }): Promise<string> {
    const argv = [bin, ...args];
    this.onCommand?.(argv);
    return new Promise<string>((resolve, reject) => {
      const child = spawn(bin, args, {
        stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        env: { ...process.env, LC_ALL: 'C' },
        signal: opts.signal,
      });
      const out: Buffer[] = [];
      let err = '';
      child.stdout!.on('data', opts.onStdout ?? ((b: Buffer) => out.push(b)));
      child.stderr!.on('data', (b: Buffer) => {
        err += b.toString('utf8');
        if (err.length > STDERR_KEEP) err = err.slice(err.length - STDERR_KEEP);
      });
      if (opts.input !== undefined) child.stdin!.end(opts.input);
      let spawnError: Error | undefined;
      child.on('error', (e) => {
        spawnError = e;
      });
      child.on('close', (code, signal) => {
        if (code === 0 && !spawnError) {
          resolve(Buffer.concat(out).toString('utf8'));
          return;
        }
        const why = spawnError ? spawnError.message : cleanStderr(err) || (signal ? `killed by ${signal}` : `exit code ${code}`);
        reject(commandError(argv, code, why, spawnError));
      });
    });
  }

  // ---------------------------------------------------------------- queries

  /** True when the dataset, volume or snapshot exists. */
  async exists(name: string): Promise<boolean> {
    try {
      await this.run(['get', '-H', '-o', 'name', 'type', '--', name]);
      return true;
    } catch (e) {
      if (isNotExist(e)) return false;
      throw e;
    }
  }

  /** `zfs get -Hp -o property,value`: exact numbers; an unset user property stays '-'. */
  async get(name: string, props: string[]): Promise<Record<string, string>> {
    const out = await this.run(['get', '-Hp', '-o', 'property,value', '--', props.join(','), name]);
    const res: Record<string, string> = {};
    for (const line of splitLines(out)) {
      const tab = line.indexOf('\t');
      if (tab < 0) throw unexpected(['get', name], line);
      res[line.slice(0, tab)] = line.slice(tab + 1);
    }
    for (const p of props) if (!(p in res)) res[p] = '-';
    return res;
  }

  /**
   * Rows of `zfs get -Hp -o name,property,value,source [-r] [-d depth] [-s sources] <props> <names>`.
   * `props` may be `['all']`. With `sources`, only properties from those sources are printed
   * (`local`, `none` for read-only ones, `inherited`, `default`, `received`, `temporary`).
   */
  async getRows(
    names: string[],
    props: string[],
    opts: { recursive?: boolean; depth?: number; sources?: string[] } = {},
  ): Promise<PropRow[]> {
    const args = ['get', '-Hp'];
    if (opts.depth !== undefined) args.push('-r', '-d', String(opts.depth));
    else if (opts.recursive) args.push('-r');
    if (opts.sources) args.push('-s', opts.sources.join(','));
    args.push('-o', 'name,property,value,source', '--', props.join(','), ...names);
    const out = await this.run(args);
    return splitLines(out).map((line) => {
      const f = line.split('\t');
      if (f.length < 4) throw unexpected(args, line);
      // the value may itself contain tabs: name and property are first, source is last
      return { name: f[0], property: f[1], value: f.slice(2, -1).join('\t'), source: f[f.length - 1] };
    });
  }

  /**
   * Datasets and/or snapshots under `root` (root included) with the given properties, one record
   * per dataset keyed by property name plus `name`. Missing properties read '-'. Numbers are exact.
   * `depth` counts like `zfs list -d`: a snapshot of `root` is at depth 1.
   */
  async list(
    root: string,
    opts: { type: ListType; depth?: number; props: string[] },
  ): Promise<Array<Record<string, string>>> {
    const props = ['type', ...opts.props.filter((p) => p !== 'type' && p !== 'name')];
    const rows = await this.getRows([root], props, { recursive: true, depth: opts.depth });
    const byName = new Map<string, Record<string, string>>();
    for (const r of rows) {
      let rec = byName.get(r.name);
      if (!rec) {
        rec = { name: r.name };
        byName.set(r.name, rec);
      }
      rec[r.property] = r.value;
    }
    const res: Array<Record<string, string>> = [];
    for (const rec of byName.values()) {
      if (opts.type !== 'all' && rec.type !== opts.type) continue;
      for (const p of opts.props) if (!(p in rec)) rec[p] = '-';
      if (!opts.props.includes('type')) delete rec.type;
      res.push(rec);
    }
    return res;
  }

  // ---------------------------------------------------------------- changes

  async create(dataset: string, props: Record<string, string> = {}, opts: { parents?: boolean } = {}): Promise<void> {
    await this.run(['create', ...(opts.parents ? ['-p'] : []), ...propArgs(props), '--', dataset]);
  }

  /** One `zfs set` per property (zfs-fuse takes only one; 2.1 takes no `--`). */
  async set(name: string, props: Record<string, string>): Promise<void> {
    for (const [k, v] of Object.entries(props)) {
      checkPropValue(k, v);
      await this.run(['set', `${k}=${v}`, name]);
    }
  }

  async inherit(name: string, prop: string): Promise<void> {
    await this.run(['inherit', '--', prop, name]);
  }

  /** `zfs snapshot -o k=v ... -- snap`: the properties are set atomically with the snapshot. */
  async snapshot(snap: string, props: Record<string, string> = {}): Promise<void> {
    await this.run(['snapshot', ...propArgs(props), '--', snap]);
  }

  /**
   * `zfs rollback` to `snap`. Without `destroyNewer` it must be the latest snapshot; with it, later
   * snapshots are destroyed (`-r`). With `spaceWaitMs`, "out of space" is retried with backoff for
   * that long: space freed just before (files truncated) only shows once its transaction group has
   * committed.
   */
  async rollback(snap: string, opts: { destroyNewer?: boolean; spaceWaitMs?: number } = {}): Promise<void> {
    const args = ['rollback', ...(opts.destroyNewer ? ['-r'] : []), '--', snap];
    await this.retryWhile(isOutOfSpace, opts.spaceWaitMs ?? 0, () => this.run(args));
  }

  /**
   * Destroys a dataset or snapshot. "dataset is busy" (FUSE releases asynchronously) is retried
   * with backoff; for a filesystem an unmount is tried between attempts.
   */
  async destroy(name: string, opts: { recursive?: boolean } = {}): Promise<void> {
    const args = ['destroy', ...(opts.recursive ? ['-r'] : []), '--', name];
    await this.retryBusy(
      () => this.run(args),
      async () => {
        if (!name.includes('@')) await this.run(['unmount', '--', name]).catch(() => undefined);
      },
    );
  }

  async clone(snap: string, target: string, props: Record<string, string> = {}): Promise<void> {
    await this.run(['clone', ...propArgs(props), '--', snap, target]);
  }

  async mount(dataset: string): Promise<void> {
    await this.run(['mount', '--', dataset]);
  }

  async unmount(dataset: string): Promise<void> {
    await this.retryBusy(() => this.run(['unmount', '--', dataset]));
  }

  /**
   * Size in bytes of the stream `zfs send [-i from] to` would produce, measured by running it and
   * counting (zfs-fuse has no `send -n -P`; OpenZFS 2.1 refuses /dev/null as stdout).
   */
  async sendSize(from: string | undefined, to: string, opts: { signal?: AbortSignal } = {}): Promise<number> {
    let bytes = 0;
    await this.exec(this.zfsBin, ['send', ...(from ? ['-i', from] : []), '--', to], {
      signal: opts.signal,
      onStdout: (b) => {
        bytes += b.length;
      },
    });
    return bytes;
  }

  /**
   * Probes what the platform offers for `dataset` (a mounted filesystem); cached per dataset.
   * snapdir: `<mountpoint>/.zfs/snapshot` when it is a directory (it works even with snapdir=hidden).
   */
  features(dataset: string): Promise<ZfsFeatures> {
    let p = this.featureCache.get(dataset);
    if (!p) {
      p = this.probeFeatures(dataset);
      this.featureCache.set(dataset, p);
      p.catch(() => this.featureCache.delete(dataset));
    }
    return p;
  }

  private async probeFeatures(dataset: string): Promise<ZfsFeatures> {
    const { mountpoint, mounted } = await this.get(dataset, ['mountpoint', 'mounted']);
    if (mounted !== 'yes' || !mountpoint.startsWith('/')) return { snapdir: undefined };
    const dir = `${mountpoint}/.zfs/snapshot`;
    const isDir = await stat(dir).then(
      (st) => st.isDirectory(),
      () => false,
    );
    return { snapdir: isDir ? dir : undefined };
  }

  /** Runs `fn`, retrying while it fails with "busy", with backoff up to busyRetryMs. */
  retryBusy<T>(fn: () => Promise<T>, between?: () => Promise<void>): Promise<T> {
    return this.retryWhile(isBusy, this.busyRetryMs, fn, between);
  }

  /** Runs `fn`, retrying while its error satisfies `transient`, with backoff for up to `ms` (0: once). */
  private async retryWhile<T>(transient: (e: unknown) => boolean, ms: number, fn: () => Promise<T>, between?: () => Promise<void>): Promise<T> {
    const deadline = Date.now() + ms;
    let delay = 50;
    for (;;) {
      try {
        return await fn();
      } catch (e) {
        if (!transient(e) || Date.now() + delay > deadline) throw e;
        await sleep(delay);
        delay = Math.min(delay * 2, 1000);
        if (between) await between();
      }
    }
  }
}

// ---------------------------------------------------------------- helpers

/** True when zfs refused because the dataset is in use (mounted and open, or being read). */
export function isBusy(e: unknown): boolean {
  return e instanceof ZfsCommandError && BUSY_RE.test(e.stderrTail);
}

/** True when zfs refused for lack of space in the pool. */
export function isOutOfSpace(e: unknown): boolean {
  return e instanceof ZfsCommandError && /out of space|no space/i.test(e.stderrTail);
}

/** True when the error says the named dataset does not exist. */
export function isNotExist(e: unknown): boolean {
  return e instanceof ZfsCommandError && /does not exist|could not find any snapshots/i.test(e.stderrTail);
}

/** Drops zfs's usage text (it follows a blank "usage:" line) and keeps the diagnostic. */
function cleanStderr(s: string): string {
  const i = s.search(/^usage:/m);
  const t = i >= 0 ? s.slice(0, i) : s;
  return stderrTail(t.replace(/\n+/g, '\n'));
}

function commandError(argv: string[], code: number | null, why: string, cause?: unknown): ZfsCommandError {
  const tool = argv[0].split('/').pop() ?? argv[0];
  const sub = argv[1] ?? '';
  const target = argv.length > 2 ? argv[argv.length - 1] : '';
  const oneLine = why.split('\n').filter(Boolean).join('; ');
  const msg = `${tool} ${sub}${target ? ` '${target}'` : ''} failed: ${oneLine}`;
  return new ZfsCommandError(msg, argv, code, why, cause === undefined ? {} : { cause });
}

function unexpected(args: string[], line: string): ZfsCommandError {
  return new ZfsCommandError(`zfs ${args[0]}: unexpected output line '${line.slice(0, 200)}'`, ['zfs', ...args], 0, '');
}

function splitLines(out: string): string[] {
  return out.split('\n').filter((l) => l.length > 0);
}

function propArgs(props: Record<string, string>): string[] {
  const args: string[] = [];
  for (const [k, v] of Object.entries(props)) {
    checkPropValue(k, v);
    args.push('-o', `${k}=${v}`);
  }
  return args;
}

function checkPropValue(k: string, v: string): void {
  if (!/^[a-z0-9_.:@-]+$/i.test(k)) {
    throw new ZfsCommandError(`invalid zfs property name '${k}'`, [], null, '');
  }
  if (v.includes('\n')) {
    throw new ZfsCommandError(`value of zfs property '${k}' contains a newline - encode it first`, [], null, '');
  }
}

/**
 * What is wrong with `name` as the name of a file system dataset, or undefined: components of
 * letters, digits and `_-.: ` (space), none empty, `.` or `..`, the pool's starting with a letter;
 * no snapshot (`@`) or bookmark (`#`) part; at most 255 bytes.
 */
export function datasetNameProblem(name: string): string | undefined {
  if (name === '') return 'expected a dataset name like tank/backup';
  if (Buffer.byteLength(name) > 255) return 'longer than the 255 bytes ZFS allows';
  if (/[@#]/.test(name)) return 'a snapshot or bookmark, expected a dataset name like tank/backup';
  const parts = name.split('/');
  if (parts.some((c) => c === '')) return "empty component (a leading, trailing or double '/')";
  if (parts.some((c) => c === '.' || c === '..')) return "'.' and '..' are no dataset names";
  const badChar = /[^A-Za-z0-9_.: /-]/.exec(name);
  if (badChar) return `character ${JSON.stringify(badChar[0])} is not allowed in a dataset name`;
  if (!/^[A-Za-z]/.test(parts[0]!)) return 'a pool name starts with a letter';
  return undefined;
}
