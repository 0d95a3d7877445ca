/**
 * File-backed ZFS pools for the demo and the tests, and starting zfs-fuse where the kernel has no ZFS.
 *
 * Owns: the zfs-fuse daemon this process started (and only that one: `stop()` signals exactly the
 * pid it spawned), creating a pool on a sparse file, destroying a pool and its file. Leaves datasets
 * inside the pool to `store.ts`. Every zfs/zpool command goes through {@link Zfs}.
 * Guarantees: `ensureZfsRunning` never starts a second daemon when `zfs` already answers (kernel
 * ZFS, or someone else's zfs-fuse), and never stops a daemon it did not start. Does not guarantee
 * that a zfs-fuse started here survives its parent (it is started detached, its pid recorded).
 */

import { spawn } from 'node:child_process';
import { mkdir, open, rm, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import { ZfsCommandError } from '../errors';
import { pidAlive } from './lock';
import { Zfs } from './zfs';

export interface EnsureZfsOptions {
  zfs?: Zfs;
  /** zfs-fuse binary (default `zfs-fuse`; looked up in PATH, then /usr/sbin and /sbin). */
  zfsFuse?: string;
  /** Where zfs-fuse writes its pid (default a file in the temp dir). */
  pidFile?: string;
  /** How long to wait for `zpool list` to answer after starting (default 20 s). */
  timeoutMs?: number;
}

export interface ZfsDaemon {
  /** True when this call started zfs-fuse. */
  started: boolean;
  pid?: number;
  /** Stops the daemon if (and only if) this call started it: TERM, wait, then KILL. */
  stop(): Promise<void>;
}

/** True when `zfs list` works right now. */
export async function zfsWorks(zfs = new Zfs()): Promise<boolean> {
  try {
    await zfs.run(['list', '-H', '-o', 'name']);
    return true;
  } catch {
    return false;
  }
}

/**
 * Makes sure zfs commands work: if they already do, does nothing; otherwise starts zfs-fuse
 * (`--no-daemon`, detached, pid recorded) and waits until `zpool list` answers.
 */
export async function ensureZfsRunning(opts: EnsureZfsOptions = {}): Promise<ZfsDaemon> {
  const zfs = opts.zfs ?? new Zfs();
  if (await zfsWorks(zfs)) return { started: false, stop: async () => undefined };

  const bin = opts.zfsFuse ?? 'zfs-fuse';
  const pidFile = opts.pidFile ?? join(tmpdir(), `vzdump-zfs-zfs-fuse-${process.pid}.pid`);
  const env = { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` };
  const child = spawn(bin, ['--no-daemon', '--pidfile', pidFile], { detached: true, stdio: 'ignore', env });
  const pid = await new Promise<number>((resolve, reject) => {
    child.once('error', (e) =>
      reject(new ZfsCommandError(`cannot start '${bin}': ${e.message}`, [bin, '--no-daemon'], null, '', { cause: e })),
    );
    child.once('spawn', () => resolve(child.pid!));
  });
  let exited: number | null | undefined;
  child.once('exit', (code) => {
    exited = code;
  });
  child.unref();
  const daemon: ZfsDaemon = { started: true, pid, stop: () => stopPid(pid) };

  const deadline = Date.now() + (opts.timeoutMs ?? 20000);
  let last = '';
  for (;;) {
    try {
      await zfs.runZpool(['list', '-H', '-o', 'name']);
      return daemon;
    } catch (e) {
      last = e instanceof Error ? e.message : String(e);
    }
    if (exited !== undefined) {
      throw new ZfsCommandError(`'${bin}' exited with code ${exited} before zpool answered: ${last}`, [bin], exited, last);
    }
    if (Date.now() > deadline) {
      await daemon.stop();
      throw new ZfsCommandError(`'${bin}' started (pid ${pid}) but zpool did not answer: ${last}`, [bin], null, last);
    }
    await sleep(200);
  }
}

/** Sends TERM to `pid`, waits up to 10 s for it to go, then KILL. No-op when it is gone. */
export async function stopPid(pid: number, graceMs = 10000): Promise<void> {
  if (!pidAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (pidAlive(pid) && Date.now() < deadline) await sleep(100);
  if (pidAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone meanwhile */
    }
    while (pidAlive(pid)) await sleep(50);
  }
}

/** Whether /proc says `pid` is a running zfs-fuse (guards against a reused pid). */
export async function isZfsFuse(pid: number): Promise<boolean> {
  const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
  return comm.trim() === 'zfs-fuse';
}

export interface CreatePoolOptions {
  zfs?: Zfs;
  /** Extra `-O prop=value` file-system properties for the root dataset. */
  rootProps?: Record<string, string>;
}

/**
 * Creates pool `name` on a sparse file of `sizeBytes` at `vdevPath` (created, with its directory),
 * with its root dataset mounted at `mountpoint`. zfs-fuse needs at least 64 MiB.
 */
export async function createFilePool(
  name: string,
  vdevPath: string,
  sizeBytes: number,
  mountpoint: string,
  opts: CreatePoolOptions = {},
): Promise<void> {
  const zfs = opts.zfs ?? new Zfs();
  await mkdir(dirname(vdevPath), { recursive: true });
  const fh = await open(vdevPath, 'wx');
  try {
    await fh.truncate(sizeBytes);
  } finally {
    await fh.close();
  }
  const props: string[] = [];
  for (const [k, v] of Object.entries(opts.rootProps ?? {})) props.push('-O', `${k}=${v}`);
  try {
    await zfs.runZpool(['create', '-m', mountpoint, ...props, '--', name, vdevPath]);
  } catch (e) {
    await rm(vdevPath, { force: true });
    throw e;
  }
}

/**
 * Destroys pool `name` (`zpool destroy -f`, retried while busy); then removes `vdevPath` if given.
 * A pool that does not exist is not an error.
 */
export async function destroyPool(name: string, opts: { zfs?: Zfs; vdevPath?: string } = {}): Promise<void> {
  const zfs = opts.zfs ?? new Zfs();
  try {
    await zfs.retryBusy(() => zfs.runZpool(['destroy', '-f', name]));
  } catch (e) {
    if (!(e instanceof ZfsCommandError && /no such pool/i.test(e.stderrTail))) throw e;
  }
  if (opts.vdevPath) await rm(opts.vdevPath, { force: true });
}
