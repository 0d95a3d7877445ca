/** Tests src/store/lock.ts: exclusivity across processes, stale takeover, release. */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile, access, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LockedError } from '../../src/errors';
import { acquireLock, processStartTime, readHolder, takeOverStale } from '../../src/store/lock';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vzdump-zfs-lock-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Spawns a process that stays alive until killed; returns its pid and a kill function. */
function sleeper(): { pid: number; kill(): Promise<void> } {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  return {
    pid: child.pid!,
    kill: () =>
      new Promise((r) => {
        child.once('exit', () => r());
        child.kill('SIGKILL');
      }),
  };
}

test('second acquire fails with LockedError naming the holder; release frees it', async () => {
  const l = await acquireLock(dir, 'guest-101');
  expect(await readFile(join(dir, 'guest-101.lock'), 'utf8')).toMatch(new RegExp(`^${process.pid} `));
  const err = await acquireLock(dir, 'guest-101').catch((e: unknown) => e);
  expect(err).toBeInstanceOf(LockedError);
  expect((err as LockedError).holder).toBe(String(process.pid));
  expect((err as LockedError).message).toContain(`pid ${process.pid}`);
  // a different name is independent
  const other = await acquireLock(dir, 'guest-102');
  await other.release();
  await l.release();
  await l.release(); // idempotent
  await expect(access(join(dir, 'guest-101.lock'))).rejects.toThrow();
  const again = await acquireLock(dir, 'guest-101');
  await again.release();
});

test('a lock held by another live process is refused; once it dies the lock is taken over', async () => {
  const s = sleeper();
  try {
    await writeFile(join(dir, 'g.lock'), `${s.pid} ${require('node:os').hostname()}\n`);
    const err = await acquireLock(dir, 'g').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockedError);
    expect((err as LockedError).holder).toBe(String(s.pid));
  } finally {
    await s.kill();
  }
  const l = await acquireLock(dir, 'g');
  expect(await readFile(join(dir, 'g.lock'), 'utf8')).toMatch(new RegExp(`^${process.pid} `));
  await l.release();
});

test('a lock whose pid now belongs to another process (another start time) is taken over', async () => {
  // the holder was killed and its pid handed out again: the pid is alive, but started later
  const s = sleeper();
  const host = require('node:os').hostname() as string;
  try {
    const start = processStartTime(s.pid)!;
    expect(start).toMatch(/^\d+$/);
    // the very process that wrote the lock: held
    await writeFile(join(dir, 'g.lock'), `${s.pid} ${host} 0123456789abcdef ${start}\n`);
    const err = await acquireLock(dir, 'g').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockedError);
    expect((err as LockedError).holder).toBe(String(s.pid));
    // an earlier process with that pid: stale, though the pid is alive
    await writeFile(join(dir, 'g.lock'), `${s.pid} ${host} 0123456789abcdef ${Number(start) - 1}\n`);
    const l = await acquireLock(dir, 'g');
    expect(await readFile(join(dir, 'g.lock'), 'utf8')).toMatch(new RegExp(`^${process.pid} ${host} [0-9a-f]{16} ${processStartTime(process.pid)}\n$`));
    await l.release();
  } finally {
    await s.kill();
  }
});

test('processStartTime reads field 22 of /proc/PID/stat, after a command name holding spaces and parentheses', async () => {
  const link = join(dir, 'odd) name (x');
  await require('node:fs/promises').symlink(process.execPath, link);
  const child = spawn(link, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  try {
    await new Promise((r) => child.once('spawn', r));
    const stat = await readFile(`/proc/${child.pid}/stat`, 'latin1');
    expect(stat).toContain('(odd) name (x)');
    const start = processStartTime(child.pid!);
    expect(start).toMatch(/^\d+$/);
    // ticks since boot: not before our own start, and the same on a second read
    expect(Number(start)).toBeGreaterThanOrEqual(Number(processStartTime(process.pid)));
    expect(processStartTime(child.pid!)).toBe(start);
  } finally {
    await new Promise((r) => {
      child.once('exit', r);
      child.kill('SIGKILL');
    });
  }
  expect(processStartTime(child.pid!)).toBeUndefined();
});

test('a stale lock is taken over by exactly one of many concurrent acquirers', async () => {
  const s = sleeper();
  const deadPid = s.pid;
  await s.kill();
  await writeFile(join(dir, 'race.lock'), `${deadPid}\n`);
  const results = await Promise.allSettled(Array.from({ length: 8 }, () => acquireLock(dir, 'race')));
  const won = results.filter((r) => r.status === 'fulfilled');
  const lost = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
  expect(won).toHaveLength(1);
  for (const r of lost) expect(r.reason).toBeInstanceOf(LockedError);
  await (won[0] as PromiseFulfilledResult<{ release(): Promise<void> }>).value.release();
});

test('release does not remove a lock that was replaced by someone else', async () => {
  const l = await acquireLock(dir, 'x');
  await rm(join(dir, 'x.lock'));
  await writeFile(join(dir, 'x.lock'), '1 otherhost\n');
  await l.release();
  expect(await readFile(join(dir, 'x.lock'), 'utf8')).toBe('1 otherhost\n');
});

test('a lock written by another host is never taken over: it names pid@host', async () => {
  await writeFile(join(dir, 'guest-103.lock'), '4242 other-backup-host 0123456789abcdef\n');
  const err = await acquireLock(dir, 'guest-103').catch((e: unknown) => e);
  expect(err).toBeInstanceOf(LockedError);
  expect((err as LockedError).holder).toBe('4242@other-backup-host');
  await access(join(dir, 'guest-103.lock'));
});

test('a lock file without a pid is held while fresh (being written) and taken over once old', async () => {
  const path = join(dir, 'guest-104.lock');
  await writeFile(path, '');
  const err = await acquireLock(dir, 'guest-104').catch((e: unknown) => e);
  expect(err).toBeInstanceOf(LockedError);
  expect((err as LockedError).holder).toBe('unknown');
  // the same file, last written a minute ago: a writer that died before writing its pid
  const old = new Date(Date.now() - 60000);
  await utimes(path, old, old);
  const l = await acquireLock(dir, 'guest-104');
  expect(await readFile(path, 'utf8')).toMatch(new RegExp(`^${process.pid} `));
  await l.release();
});

test('a takeover removes only the very file it found stale, not a new lock with the same inode number', async () => {
  // the inode of a removed lock may be handed out again at once (ext4), so the inode alone does not
  // tell a new lock from the stale one: here the stale file is rewritten in place as another waiter's
  // newly taken lock would look (same inode, new content and mtime)
  const s = sleeper();
  const deadPid = s.pid;
  await s.kill();
  const path = join(dir, 'reused.lock');
  await writeFile(path, `${deadPid} ${require('node:os').hostname()} 00\n`);
  const old = new Date(Date.now() - 60000);
  await utimes(path, old, old);
  const stale = (await readHolder(path))!;
  const ino = (await stat(path)).ino;
  for (const now of ['', `${process.pid} ${require('node:os').hostname()} 11\n`]) {
    await writeFile(path, now);
    expect((await stat(path)).ino).toBe(ino);
    await takeOverStale(path, stale);
    expect(await readFile(path, 'utf8')).toBe(now);
  }
  // the stale file itself, unchanged, goes
  await writeFile(path, stale.text);
  await utimes(path, old, old);
  await takeOverStale(path, (await readHolder(path))!);
  await expect(access(path)).rejects.toThrow();
});

test('a lock file never exists without its content, so a reader never sees it empty', async () => {
  const path = join(dir, 'busy.lock');
  let reads = 0;
  let running = true;
  const watcher = (async () => {
    while (running) {
      const text = await readFile(path, 'utf8').catch(() => undefined);
      if (text !== undefined) {
        reads++;
        expect(text).toMatch(new RegExp(`^${process.pid} \\S+ [0-9a-f]{16} ${processStartTime(process.pid)}\n$`));
      }
      await new Promise((r) => setImmediate(r));
    }
  })();
  for (let i = 0; i < 300; i++) await (await acquireLock(dir, 'busy')).release();
  running = false;
  await watcher;
  expect(reads).toBeGreaterThan(0);
});

test('a lock directory that cannot be made fails at once with one error naming it (no hang under /proc)', async () => {
  await expect(acquireLock('/proc/vzdump-zfs-nope/locks', 'g')).rejects.toThrow(/^cannot create lock directory '\/proc\/vzdump-zfs-nope\/locks': /);
  await writeFile(join(dir, 'afile'), 'x');
  await expect(acquireLock(join(dir, 'afile', 'locks'), 'g')).rejects.toThrow(`cannot create lock directory '${join(dir, 'afile', 'locks')}': '${join(dir, 'afile')}' is not a directory`);
  const deep = join(dir, 'a', 'b', 'c');
  await (await acquireLock(deep, 'g')).release();
  await access(deep);
});

test('with waitMs a held lock is waited for, up to that long', async () => {
  const held = await acquireLock(dir, 'w');
  await expect(acquireLock(dir, 'w', { waitMs: 150 })).rejects.toBeInstanceOf(LockedError);
  const waiting = acquireLock(dir, 'w', { waitMs: 5000 });
  setTimeout(() => void held.release(), 200);
  await (await waiting).release();
});

test('a lock name that is not a plain file name is refused', async () => {
  for (const bad of ['../guest', 'a/b', '..', '.', '']) {
    await expect(acquireLock(dir, bad)).rejects.toThrow(`invalid lock name '${bad}'`);
  }
});
