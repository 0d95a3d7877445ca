/**
 * Cross-process exclusive locks on this host: one lock file per name, appearing with its content.
 *
 * Owns: `<dir>/<name>.lock` files (content `<pid> <hostname> <token> <start>`, written to a file
 * of the taker's own and hard-linked into place, so a lock never exists empty), and the
 * short-lived `<name>.lock.takeover` guard used while replacing a stale lock. Leaves what is locked
 * to callers (store.ts locks one guest per ingest, and one guest's catalog per forget or protect).
 * Guarantees: while a live process holds a lock, acquiring it fails with LockedError naming the
 * holder pid (the same process acquiring twice fails too). A lock whose pid is dead is taken over,
 * and so is one whose pid now belongs to another process: `<start>` is the holder's start time
 * (field 22 of /proc/PID/stat, clock ticks since boot), and a live pid with another start time
 * was handed out again. The takeover is serialised by the guard file and removes only the very
 * file found stale (same inode, content and mtime: an inode the file system hands out again to a
 * new lock does not match), so two waiters cannot both take a stale lock.
 * Does not guarantee: correctness across hosts (pids are local: keep `dir` on local storage, the
 * default /run/lock is). Without /proc, or for a lock file written before start times were
 * recorded, a live pid counts as the holder.
 */

import { readFileSync } from 'node:fs';
import { link, mkdir, open, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { IoError, LockedError } from '../errors';

export interface Lock {
  /** The lock file path. */
  readonly path: string;
  /** Removes the lock file if it is still ours. Idempotent. */
  release(): Promise<void>;
}

/** A guard file older than this is from a crashed takeover and is removed. */
const GUARD_STALE_MS = 10000;
/** A lock file with no readable pid younger than this is being written right now: treat as held. */
const FRESH_MS = 5000;

/**
 * Takes lock `name` in `dir` (created if missing), or throws LockedError naming the live holder;
 * with `waitMs`, a held lock is tried again until that much time has passed.
 */
export async function acquireLock(dir: string, name: string, opts: { waitMs?: number } = {}): Promise<Lock> {
  if (!/^[^/\0]+$/.test(name) || name === '.' || name === '..') {
    throw new IoError(`invalid lock name '${name}'`, join(dir, name));
  }
  await makeDir(dir);
  const path = join(dir, `${name}.lock`);
  const deadline = Date.now() + (opts.waitMs ?? 0);
  for (;;) {
    try {
      return await tryAcquire(path, name);
    } catch (e) {
      if (!(e instanceof LockedError) || Date.now() >= deadline) throw e;
      await sleep(50 + Math.random() * 50);
    }
  }
}

async function tryAcquire(path: string, name: string): Promise<Lock> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const mine = await tryCreate(path);
    if (mine) return mine;
    const holder = await readHolder(path);
    if (holder === undefined) continue; // vanished meanwhile: try again
    if (holder.pid === null) {
      if (Date.now() - holder.mtimeMs < FRESH_MS) throw locked(path, name, 'unknown');
    } else if (holder.host === hostname() && holderAlive(holder.pid, holder.start)) {
      throw locked(path, name, String(holder.pid));
    } else if (holder.host !== hostname()) {
      throw locked(path, name, `${holder.pid}@${holder.host}`);
    }
    // stale: replace it under the guard
    await takeOverStale(path, holder);
  }
  throw new LockedError(`cannot acquire lock '${path}': it keeps changing hands`, name);
}

/**
 * mkdir -p without Node's recursive mode (which loops forever under /proc, for one): the parent
 * first when it is missing, then once more; one IoError naming the directory on failure.
 */
async function makeDir(dir: string): Promise<void> {
  const fail = (why: string, cause?: unknown) => new IoError(`cannot create lock directory '${dir}': ${why}`, dir, cause === undefined ? {} : { cause });
  const make = async (d: string, parentMade = false): Promise<void> => {
    try {
      await mkdir(d);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') {
        if ((await stat(d).catch(() => undefined))?.isDirectory()) return;
        throw fail(`'${d}' is not a directory`);
      }
      // a missing parent (ENOENT), or one that is a file (ENOTDIR: making it says so)
      if ((code === 'ENOENT' || code === 'ENOTDIR') && !parentMade && dirname(d) !== d) {
        await make(dirname(d));
        return make(d, true);
      }
      throw fail((e as Error).message, e);
    }
  };
  await make(resolve(dir));
}

async function tryCreate(path: string): Promise<Lock | undefined> {
  const token = randomBytes(8).toString('hex');
  const start = processStartTime(process.pid);
  const content = `${process.pid} ${hostname()} ${token}${start === undefined ? '' : ` ${start}`}\n`;
  // written whole under a name of our own, then linked: the lock appears with its content
  const own = `${path}.${process.pid}-${token}`;
  let ino: number;
  try {
    await writeFile(own, content, { flag: 'wx', mode: 0o644 });
    ino = (await stat(own)).ino;
    await link(own, path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw new IoError(`cannot create lock '${path}': ${(e as Error).message}`, path, { cause: e });
  } finally {
    await unlink(own).catch(() => undefined);
  }
  let released = false;
  return {
    path,
    async release() {
      if (released) return;
      released = true;
      // only remove the file if it is still the one we created
      const s = await stat(path).catch(() => undefined);
      const now = await readFile(path, 'utf8').catch(() => '');
      if (s && s.ino === ino && now === content) await unlink(path).catch(() => undefined);
    },
  };
}

/** What a lock file held when read (exported with readHolder and takeOverStale for the tests). */
export interface Holder {
  pid: number | null;
  host: string;
  /** the holder's start time as recorded (clock ticks since boot), when it was */
  start?: string;
  ino: number;
  mtimeMs: number;
  /** the file's content as read */
  text: string;
}

export async function readHolder(path: string): Promise<Holder | undefined> {
  try {
    const s = await stat(path);
    const text = await readFile(path, 'utf8');
    const m = /^(\d+)(?: (\S+))?(?: \S+)?(?: (\d+))?\s*$/.exec(text);
    const holder: Holder = { pid: m ? Number(m[1]) : null, host: m?.[2] ?? hostname(), ino: s.ino, mtimeMs: s.mtimeMs, text };
    if (m?.[3] !== undefined) holder.start = m[3];
    return holder;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new IoError(`cannot read lock '${path}': ${(e as Error).message}`, path, { cause: e });
  }
}

/** Removes the lock file found stale (`stale`) while holding `<path>.takeover`, if it is still that very file. */
export async function takeOverStale(path: string, stale: Holder): Promise<void> {
  const guard = `${path}.takeover`;
  let fh;
  try {
    fh = await open(guard, 'wx', 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new IoError(`cannot create '${guard}'`, guard, { cause: e });
    const s = await stat(guard).catch(() => undefined);
    if (s && Date.now() - s.mtimeMs > GUARD_STALE_MS) await rm(guard, { force: true });
    else await sleep(50 + Math.random() * 100);
    return; // caller retries from the start
  }
  try {
    await fh.close();
    // re-check under the guard: still the same dead holder's file? (another waiter may have taken
    // the lock over meanwhile, and its new file may have the old inode number)
    const h = await readHolder(path);
    if (h && h.ino === stale.ino && h.mtimeMs === stale.mtimeMs && h.text === stale.text) await unlink(path).catch(() => undefined);
  } finally {
    await rm(guard, { force: true });
  }
}

function locked(path: string, name: string, holder: string): LockedError {
  return new LockedError(`'${name}' is locked by pid ${holder} (lock file '${path}')`, name, holder);
}

/**
 * Whether the process that wrote a lock still runs: its pid exists and, when the lock recorded a
 * start time and /proc tells this pid's, the two are equal (otherwise the pid was handed out again).
 */
function holderAlive(pid: number, start: string | undefined): boolean {
  if (!pidAlive(pid)) return false;
  if (start === undefined) return true;
  const now = processStartTime(pid);
  return now === undefined || now === start;
}

/** Field 22 of /proc/PID/stat (start time in clock ticks since boot), or undefined without /proc. */
export function processStartTime(pid: number): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // the command name (field 2) is in parentheses and may hold spaces and ')': fields 3.. follow the last ')'
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const start = fields[22 - 3];
  return start !== undefined && /^\d+$/.test(start) ? start : undefined;
}

/** Whether a local pid exists (EPERM: exists, owned by someone else). */
export function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
