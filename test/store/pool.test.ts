/** Tests src/store/pool.ts: file-backed pools and the "zfs already runs" path of ensureZfsRunning. */
import { access, stat, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ZfsCommandError } from '../../src/errors';
import { createFilePool, destroyPool, ensureZfsRunning, stopPid } from '../../src/store/pool';
import { pidAlive as alive } from '../../src/store/lock';
import { Zfs } from '../../src/store/zfs';
import { describeZfs } from '../helpers/zpool';
import { useTempDir } from '../helpers/tmpdir';
import { spawn } from 'node:child_process';

test('stopPid ends a process with TERM and is a no-op for a gone pid', async () => {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  const exited = new Promise((r) => child.once('exit', (_c, sig) => r(sig)));
  expect(alive(child.pid!)).toBe(true);
  await stopPid(child.pid!, 5000);
  expect(await exited).toBe('SIGTERM');
  await stopPid(child.pid!); // gone: nothing happens
});

test('stopPid sends KILL to a process that ignores TERM once the grace time is over', async () => {
  const child = spawn(process.execPath, ['-e', "process.on('SIGTERM', () => {}); process.stdout.write('ready'); setInterval(() => {}, 1000)"], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  await new Promise((r) => child.stdout!.once('data', r)); // its TERM handler is installed
  const exited = new Promise((r) => child.once('exit', (_c, sig) => r(sig)));
  await stopPid(child.pid!, 300);
  expect(await exited).toBe('SIGKILL');
  expect(alive(child.pid!)).toBe(false);
});

describe('ensureZfsRunning with stand-in binaries (the real daemon is left alone)', () => {
  const dir = useTempDir('vzdump-zfs-fake-');

  /** zfs/zpool stand-ins that fail until `mark` exists, like zfs-fuse's tools before the daemon is up. */
  async function fakeTools(mark: string): Promise<Zfs> {
    const tool = `#!/bin/sh\n[ -e '${mark}' ] && exit 0\necho 'connect: No such file or directory' >&2\nexit 1\n`;
    await writeFile(join(dir(), 'zfs'), tool, { mode: 0o755 });
    await writeFile(join(dir(), 'zpool'), tool, { mode: 0o755 });
    return new Zfs({ zfs: join(dir(), 'zfs'), zpool: join(dir(), 'zpool') });
  }

  test('starts the daemon, waits until zpool answers, and stop() ends exactly that pid', async () => {
    const mark = join(dir(), 'up');
    const zfs = await fakeTools(mark);
    const fuse = join(dir(), 'zfs-fuse');
    await writeFile(fuse, `#!/bin/sh\nsleep 0.3\n: > '${mark}'\nexec sleep 60\n`, { mode: 0o755 });
    const d = await ensureZfsRunning({ zfs, zfsFuse: fuse, timeoutMs: 10000 });
    expect(d.started).toBe(true);
    expect(alive(d.pid!)).toBe(true);
    await access(mark);
    await d.stop();
    expect(alive(d.pid!)).toBe(false);
  });

  test('a daemon that exits at once is reported with its exit code', async () => {
    const zfs = await fakeTools(join(dir(), 'never'));
    const fuse = join(dir(), 'zfs-fuse');
    await writeFile(fuse, '#!/bin/sh\nexit 4\n', { mode: 0o755 });
    await expect(ensureZfsRunning({ zfs, zfsFuse: fuse, timeoutMs: 10000 })).rejects.toThrow(/exited with code 4/);
  });

  test('a daemon that runs but never makes zpool answer is stopped and reported', async () => {
    const zfs = await fakeTools(join(dir(), 'never'));
    const fuse = join(dir(), 'zfs-fuse');
    const pidOut = join(dir(), 'fuse.pid');
    await writeFile(fuse, `#!/bin/sh\necho $$ > '${pidOut}'\nexec sleep 60\n`, { mode: 0o755 });
    const err = await ensureZfsRunning({ zfs, zfsFuse: fuse, timeoutMs: 600 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ZfsCommandError);
    const pid = Number((await readFile(pidOut, 'utf8')).trim());
    expect((err as Error).message).toBe(`'${fuse}' started (pid ${pid}) but zpool did not answer: ${(err as ZfsCommandError).stderrTail}`);
    expect((err as ZfsCommandError).stderrTail).toContain('connect: No such file or directory');
    expect(alive(pid)).toBe(false);
  });

  test('a missing zfs-fuse binary is a ZfsCommandError', async () => {
    const zfs = await fakeTools(join(dir(), 'never'));
    await expect(ensureZfsRunning({ zfs, zfsFuse: join(dir(), 'nope'), timeoutMs: 2000 })).rejects.toBeInstanceOf(ZfsCommandError);
  });
});

describeZfs('file-backed pools', () => {
  const dir = useTempDir('vzdump-zfs-pool-', { each: false });

  test('ensureZfsRunning does nothing when zfs already answers, and its stop() is a no-op', async () => {
    const d = await ensureZfsRunning();
    expect(d.started).toBe(false);
    expect(d.pid).toBeUndefined();
    await d.stop();
    await new Zfs().run(['list', '-H', '-o', 'name']); // still running
  });

  test('createFilePool makes a sparse vdev and a mounted pool; destroyPool removes both', async () => {
    const zfs = new Zfs();
    const name = `vztp${process.pid}`;
    const vdev = join(dir(), 'sub dir', 'vdev');
    const mnt = join(dir(), 'mnt point');
    await createFilePool(name, vdev, 128 * 1024 * 1024, mnt, { zfs, rootProps: { compression: 'on' } });
    try {
      const s = await stat(vdev);
      expect(s.size).toBe(128 * 1024 * 1024);
      const p = await zfs.get(name, ['mountpoint', 'mounted', 'compression']);
      expect(p).toEqual({ mountpoint: mnt, mounted: 'yes', compression: 'on' });
      await writeFile(join(mnt, 'f'), 'hello');
      expect(await readFile(join(mnt, 'f'), 'utf8')).toBe('hello');
      // the vdev file is never reused or overwritten
      await expect(createFilePool(`${name}x`, vdev, 128 * 1024 * 1024, mnt, { zfs })).rejects.toThrow(/EEXIST/);
    } finally {
      await destroyPool(name, { zfs, vdevPath: vdev });
    }
    expect(await zfs.exists(name)).toBe(false);
    await expect(access(vdev)).rejects.toThrow();
    await destroyPool(name, { zfs }); // already gone: fine
  });

  test('a pool on a too-small vdev fails with the zpool message and leaves no file', async () => {
    const vdev = join(dir(), 'tiny');
    const err = await createFilePool(`vztt${process.pid}`, vdev, 1024 * 1024, join(dir(), 'm2')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ZfsCommandError);
    expect((err as ZfsCommandError).message).toMatch(/^zpool create .* failed: /);
    await expect(access(vdev)).rejects.toThrow();
  });
});
