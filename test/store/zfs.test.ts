/** Tests src/store/zfs.ts against a real file-backed pool (zfs-fuse in CI). */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ZfsCommandError } from '../../src/errors';
import { Zfs, isOutOfSpace } from '../../src/store/zfs';
import { describeZfs, withTestPool } from '../helpers/zpool';
import { useTempDir } from '../helpers/tmpdir';

describe('retryBusy', () => {
  const busy = () => new ZfsCommandError("zfs destroy 'p/x' failed: dataset is busy", ['zfs', 'destroy', 'p/x'], 1, "cannot destroy 'p/x': dataset is busy");

  test('retries "busy" until it succeeds, running the in-between step', async () => {
    const z = new Zfs({ busyRetryMs: 3000 });
    let calls = 0;
    let between = 0;
    const r = await z.retryBusy(
      async () => {
        if (++calls < 3) throw busy();
        return 'ok';
      },
      async () => {
        between++;
      },
    );
    expect(r).toBe('ok');
    expect(calls).toBe(3);
    expect(between).toBe(2);
  });

  test('other errors are not retried; busy gives up after the deadline', async () => {
    const z = new Zfs({ busyRetryMs: 300 });
    let calls = 0;
    const other = new ZfsCommandError('x', [], 1, 'dataset does not exist');
    await expect(z.retryBusy(async () => (calls++, Promise.reject(other)))).rejects.toBe(other);
    expect(calls).toBe(1);
    const t0 = Date.now();
    await expect(z.retryBusy(() => Promise.reject(busy()))).rejects.toThrow(/busy/);
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});

describe('rollback on a full pool', () => {
  const dir = useTempDir('vzdump-zfs-fakezfs-');

  /** A zfs stand-in whose first `failures` calls say "out of space", like a rollback before freed space commits. */
  async function fakeZfs(failures: number): Promise<{ zfs: Zfs; calls: () => Promise<number> }> {
    const count = join(dir(), 'calls');
    await writeFile(count, '0');
    const script = `#!/bin/sh\nn=$(($(cat '${count}') + 1))\necho $n > '${count}'\n[ $n -gt ${failures} ] && exit 0\necho "cannot rollback 'p/x': out of space" >&2\nexit 1\n`;
    await writeFile(join(dir(), 'zfs'), script, { mode: 0o755 });
    return { zfs: new Zfs({ zfs: join(dir(), 'zfs') }), calls: async () => Number((await readFile(count, 'utf8')).trim()) };
  }

  test('with spaceWaitMs, "out of space" is retried until the freed space shows', async () => {
    const { zfs, calls } = await fakeZfs(2);
    await zfs.rollback('p/x@s', { spaceWaitMs: 5000 });
    expect(await calls()).toBe(3);
  });

  test('without it, or past it, "out of space" is the error', async () => {
    const once = await fakeZfs(2);
    const err = await once.zfs.rollback('p/x@s').catch((e: unknown) => e);
    expect(isOutOfSpace(err)).toBe(true);
    expect(await once.calls()).toBe(1);
    const never = await fakeZfs(1000);
    await expect(never.zfs.rollback('p/x@s', { spaceWaitMs: 200 })).rejects.toThrow(/out of space/);
    expect(await never.calls()).toBeGreaterThan(1);
  });
});

describeZfs('Zfs wrapper', () => {
  const tp = withTestPool();

  test('create, exists, get parses exact numbers and keeps unset user props as "-"', async () => {
    const { zfs, root } = tp();
    expect(await zfs.exists(root)).toBe(false);
    await zfs.create(root, { compression: 'on', recordsize: '64K' });
    expect(await zfs.exists(root)).toBe(true);
    const p = await zfs.get(root, ['recordsize', 'compression', 'type', 'used', 'vzdump-zfs:nothing']);
    expect(p.recordsize).toBe(String(64 * 1024));
    expect(p.compression).toBe('on');
    expect(p.type).toBe('filesystem');
    expect(p.used).toMatch(/^\d+$/);
    expect(p['vzdump-zfs:nothing']).toBe('-');
  });

  test('an error on a missing dataset carries argv and stderr', async () => {
    const { zfs, pool } = tp();
    const name = `${pool}/does not exist`;
    const err = await zfs.get(name, ['type']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ZfsCommandError);
    const ze = err as ZfsCommandError;
    expect(ze.argv).toContain(name);
    expect(ze.exitCode).not.toBe(0);
    expect(ze.stderrTail).toMatch(/does not exist/);
    expect(ze.stderrTail).not.toMatch(/usage:/);
    expect(ze.message).toMatch(new RegExp(`^zfs get '${name}' failed: .*does not exist`));
  });

  test('set/inherit user properties with spaces and UTF-8; snapshot -o sets them atomically', async () => {
    const { zfs, root } = tp();
    const ds = `${root}/set test`;
    await zfs.create(ds, {}, { parents: true });
    await zfs.set(ds, { 'vzdump-zfs:a': 'x y  z', 'vzdump-zfs:b': 'grüße ✓' });
    expect(await zfs.get(ds, ['vzdump-zfs:a', 'vzdump-zfs:b'])).toEqual({ 'vzdump-zfs:a': 'x y  z', 'vzdump-zfs:b': 'grüße ✓' });
    await zfs.inherit(ds, 'vzdump-zfs:a');
    expect((await zfs.get(ds, ['vzdump-zfs:a']))['vzdump-zfs:a']).toBe('-');
    await zfs.snapshot(`${ds}@s 1`, { 'vzdump-zfs:c': 'one two', 'vzdump-zfs:d': '4' });
    const rows = await zfs.getRows([`${ds}@s 1`], ['vzdump-zfs:c', 'vzdump-zfs:d', 'vzdump-zfs:b']);
    expect(rows.map((r) => [r.property, r.value, r.source])).toEqual([
      ['vzdump-zfs:c', 'one two', 'local'],
      ['vzdump-zfs:d', '4', 'local'],
      ['vzdump-zfs:b', 'grüße ✓', `inherited from ${ds}`],
    ]);
  });

  test('list returns datasets or snapshots with props, honouring depth', async () => {
    const { zfs, root } = tp();
    const base = `${root}/list`;
    await zfs.create(`${base}/a/deep`, {}, { parents: true });
    await zfs.snapshot(`${base}/a@one`);
    await zfs.snapshot(`${base}/a/deep@two`);
    const fs1 = await zfs.list(base, { type: 'filesystem', depth: 1, props: ['creation', 'used'] });
    expect(fs1.map((r) => r.name).sort()).toEqual([base, `${base}/a`]);
    for (const r of fs1) {
      expect(r.creation).toMatch(/^\d+$/);
      expect(r.used).toMatch(/^\d+$/);
    }
    const snaps = await zfs.list(base, { type: 'snapshot', props: ['creation'] });
    expect(snaps.map((r) => r.name).sort()).toEqual([`${base}/a/deep@two`, `${base}/a@one`]);
    const snaps2 = await zfs.list(base, { type: 'snapshot', depth: 2, props: [] });
    expect(snaps2.map((r) => r.name)).toEqual([`${base}/a@one`]);
    const all = await zfs.list(`${base}/a`, { type: 'all', depth: 1, props: ['type'] });
    expect(all.map((r) => `${r.name}:${r.type}`).sort()).toEqual([
      `${base}/a/deep:filesystem`,
      `${base}/a:filesystem`,
      `${base}/a@one:snapshot`,
    ]);
  });

  test('rollback to the latest snapshot restores files; destroy of a just-read clone succeeds', async () => {
    const { zfs, root } = tp();
    const ds = `${root}/rb`;
    await zfs.create(ds, {}, { parents: true });
    const mp = (await zfs.get(ds, ['mountpoint'])).mountpoint;
    await writeFile(join(mp, 'f'), 'before');
    await zfs.snapshot(`${ds}@a`);
    await writeFile(join(mp, 'f'), 'after');
    await zfs.rollback(`${ds}@a`);
    expect(await readFile(join(mp, 'f'), 'utf8')).toBe('before');

    for (let i = 0; i < 3; i++) {
      const clone = `${root}/rb clone ${i}`;
      await zfs.clone(`${ds}@a`, clone, { readonly: 'on' });
      const cmp = (await zfs.get(clone, ['mountpoint'])).mountpoint;
      expect(await readFile(join(cmp, 'f'), 'utf8')).toBe('before');
      await zfs.destroy(clone); // busy right after the read on zfs-fuse: retried inside
      expect(await zfs.exists(clone)).toBe(false);
    }
  });

  test('sendSize counts the bytes of full and incremental streams', async () => {
    const { zfs, root } = tp();
    const ds = `${root}/send`;
    await zfs.create(ds, { compression: 'off' }, { parents: true });
    const mp = (await zfs.get(ds, ['mountpoint'])).mountpoint;
    await zfs.snapshot(`${ds}@empty`);
    await writeFile(join(mp, 'big'), Buffer.alloc(1024 * 1024, 7));
    await zfs.snapshot(`${ds}@full`);
    await writeFile(join(mp, 'small'), Buffer.alloc(4096, 9));
    await zfs.snapshot(`${ds}@small`);
    const full = await zfs.sendSize(undefined, `${ds}@full`);
    const incr = await zfs.sendSize(`${ds}@empty`, `${ds}@full`);
    const small = await zfs.sendSize(`${ds}@full`, `${ds}@small`);
    expect(full).toBeGreaterThan(1024 * 1024);
    expect(incr).toBeGreaterThan(1024 * 1024);
    expect(incr).toBeLessThanOrEqual(full);
    expect(small).toBeGreaterThan(4096);
    expect(small).toBeLessThan(full / 4);
  });

  test('features are probed and cached', async () => {
    const { zfs, root } = tp();
    const f = await zfs.features(root);
    expect(await zfs.features(root)).toBe(f);
    const mp = (await zfs.get(root, ['mountpoint'])).mountpoint;
    const hasDir = await readFile(join(mp, '.zfs', 'snapshot')).then(
      () => true,
      (e: NodeJS.ErrnoException) => e.code === 'EISDIR',
    );
    expect(f.snapdir).toBe(hasDir ? join(mp, '.zfs', 'snapshot') : undefined);
  });

  test('onCommand sees every argv; a missing binary becomes a ZfsCommandError', async () => {
    const seen: string[][] = [];
    const z = new Zfs({ onCommand: (a) => seen.push(a) });
    await z.exists(tp().root);
    expect(seen[0][0]).toBe('zfs');
    expect(seen[0]).toContain(tp().root);
    const bad = new Zfs({ zfs: '/nonexistent/zfs' });
    await expect(bad.run(['list'])).rejects.toBeInstanceOf(ZfsCommandError);
  });
});
