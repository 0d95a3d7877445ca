/** Tests src/store/store.ts (BackupStore) on a real file-backed pool, root dataset 'pool/back ups'. */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildSync } from 'esbuild';
import { ConfigError, ConflictError, LockedError, NotFoundError, UsageError, ZfsCommandError } from '../../src/errors';
import { Zfs, datasetNameProblem } from '../../src/store/zfs';
import { acquireLock } from '../../src/store/lock';
import { BackupStore, MAX_VALUE_BYTES, TMP_DATASET, type GuestWrite, decodePropValue, encodePropValue, fitPropValue } from '../../src/store/store';
import { clonesLeft, describeZfs, withTestPool } from '../helpers/zpool';

const TS1 = '2025_01_02-03_04_05';
const TS2 = '2025_01_03-03_04_05';
const TS3 = '2025_01_04-03_04_05';

/** The dirty mark a write by `pid` on this host sets (store.ts): `<pid>@<host> since <epoch s>`. */
const dirtyMark = (pid: number): RegExp => new RegExp(`^${pid}@${hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} since \\d+$`);

test('a store dataset that is not a dataset name is a ConfigError naming store.dataset', () => {
  for (const root of ['', '/tank/backup', 'tank/backup/', 'tank@snap', 'tank#bookmark', 'tank\nbackup', 'tank/st/../st', 'tank//st', '-x', '1tank/st', 'tank/st*']) {
    let err: unknown;
    try {
      new BackupStore(new Zfs(), root);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).key).toBe('store.dataset');
    expect((err as Error).message).toContain(`invalid store dataset '${root}'`);
  }
});

test('datasetNameProblem accepts what ZFS names datasets with, spaces included', () => {
  for (const ok of ['tank', 'tank/vzdump', 'rpool/data/back ups', 'tank/a_b-c.d:e']) expect(datasetNameProblem(ok)).toBeUndefined();
  expect(datasetNameProblem('tank/st/../st')).toBe("'.' and '..' are no dataset names");
  expect(datasetNameProblem('tank/st@vzdump-x')).toBe('a snapshot or bookmark, expected a dataset name like tank/backup');
  expect(datasetNameProblem(`tank/${'x'.repeat(260)}`)).toBe('longer than the 255 bytes ZFS allows');
});

test('fitPropValue keeps text that fits and cuts longer text at a character boundary to the largest fitting prefix', () => {
  expect(fitPropValue('short ✓')).toEqual({ value: 'short ✓', cut: false });
  const exact = 'x'.repeat(MAX_VALUE_BYTES);
  expect(fitPropValue(exact)).toEqual({ value: exact, cut: false });
  for (const long of ['x'.repeat(MAX_VALUE_BYTES + 1), '🎉'.repeat(1000), `${'a'.repeat(7999)}ü`]) {
    const { value, cut } = fitPropValue(long);
    expect(cut).toBe(true);
    expect(long.startsWith(value)).toBe(true);
    expect(encodePropValue(value).length).toBeLessThanOrEqual(MAX_VALUE_BYTES);
    const next = Array.from(long).slice(0, Array.from(value).length + 1).join('');
    expect(encodePropValue(next).length).toBeGreaterThan(MAX_VALUE_BYTES);
  }
});

test('property value encoding round-trips any text and yields printable ASCII', () => {
  const samples = ['plain', 'with spaces  ', ' lead', 'multi\nline\r\n\ttab', '100% ünïcødé ✓ 🎉', '-', '%41', ''];
  for (const s of samples) {
    const enc = encodePropValue(s);
    expect(enc).toMatch(/^[\x20-\x7e]*$/);
    expect(enc).not.toBe('-');
    expect(decodePropValue(enc)).toBe(s);
  }
  expect(encodePropValue('a b')).toBe('a b');
});

describeZfs('BackupStore', () => {
  const tp = withTestPool();
  let lockDir: string;
  let store: BackupStore;

  beforeAll(async () => {
    lockDir = await mkdtemp(join(tmpdir(), 'vzdump-zfs-locks-'));
  });
  afterAll(async () => {
    await rm(lockDir, { recursive: true, force: true });
  });
  beforeEach(() => {
    store = new BackupStore(tp().zfs, tp().root, { lockDir });
  });

  const props = (archive: string, extra: Record<string, unknown> = {}) => ({
    archive,
    ctime: 1735787045,
    size: 123456789,
    ...extra,
  });

  test('list on an empty store (root missing, then root without guests) is empty', async () => {
    expect(await store.list()).toEqual([]);
    expect(await store.list(101)).toEqual([]);
    await expect(store.get(101, TS1)).rejects.toBeInstanceOf(NotFoundError);
    await tp().zfs.create(tp().root);
    expect(await store.list()).toEqual([]);
  });

  test('beginWrite creates the guest dataset with its properties, marked dirty, locked', async () => {
    const w = await store.beginWrite(101);
    expect(w.created).toBe(true);
    expect(w.dataset).toBe(`${tp().root}/101`);
    expect(await store.list(101)).toEqual([]);
    const p = await tp().zfs.get(w.dataset, ['compression', 'recordsize', 'vzdump-zfs:dirty', 'mountpoint', 'mounted']);
    expect(p.compression).toBe('on');
    expect(p.recordsize).toBe(String(64 * 1024));
    expect(p['vzdump-zfs:dirty']).toMatch(dirtyMark(process.pid));
    expect(p.mounted).toBe('yes');
    expect(w.dir).toBe(p.mountpoint);
    await expect(store.beginWrite(101)).rejects.toBeInstanceOf(LockedError);
    // another guest is independent
    const w2 = await store.beginWrite(102);
    await w2.abort();
    expect(await tp().zfs.exists(`${tp().root}/102`)).toBe(false);
    await w.abort();
  });

  test("a new guest inherits the root's compression unless that is off; a configured compression wins", async () => {
    const compressionOf = async (ds: string) => (await tp().zfs.run(['get', '-H', '-o', 'value,source', 'compression', ds])).trim().split('\t');
    const root = `${tp().pool}/zipped`;
    await tp().zfs.create(root, { compression: 'gzip-1' });
    try {
      const inheriting = new BackupStore(tp().zfs, root, { lockDir });
      const w = await inheriting.beginWrite(201);
      expect(await compressionOf(w.dataset)).toEqual(['gzip-1', `inherited from ${root}`]);
      await w.abort();
      const configured = new BackupStore(tp().zfs, root, { lockDir, compression: 'lzjb' });
      const w2 = await configured.beginWrite(202);
      expect(await compressionOf(w2.dataset)).toEqual(['lzjb', 'local']);
      await w2.abort();
      // and where the root has none, the guest still gets compression on
      await tp().zfs.set(root, { compression: 'off' });
      const w3 = await inheriting.beginWrite(203);
      expect(await compressionOf(w3.dataset)).toEqual(['on', 'local']);
      await w3.abort();
    } finally {
      await tp().zfs.destroy(root, { recursive: true });
    }
  });

  test('commit makes a listed backup with all properties; the next write sees it as latest', async () => {
    const w = await store.beginWrite(101);
    await writeFile(join(w.dir, 'disk.raw'), Buffer.alloc(65536, 1));
    await writeFile(join(w.dir, 'qemu-server.conf'), 'memory: 512\n');
    expect(await store.list(101)).toEqual([]); // in flight: not a backup yet
    const before = Math.floor(Date.now() / 1000);
    const info = await w.commit(TS1, props(`vzdump-qemu-101-${TS1}.vma.zst`, { uuid: 'abc', diskSizes: { a: 1 }, vmaCtime: 17 }));
    expect(info).toMatchObject({
      vmid: 101,
      timestamp: TS1,
      snapshot: `${tp().root}/101@vzdump-${TS1}`,
      dataset: `${tp().root}/101`,
      archive: `vzdump-qemu-101-${TS1}.vma.zst`,
      ctime: 1735787045,
      size: 123456789,
      notes: '',
      protected: false,
      subtype: 'qemu',
      format: '1',
      extra: { uuid: 'abc', diskSizes: '{"a":1}', vmaCtime: '17' },
    });
    expect(info.created).toBeGreaterThanOrEqual(before - 5);
    expect(store.snapshotName(TS1)).toContain(TS1);
    expect(await store.list()).toEqual([info]);
    expect(await store.get(101, TS1)).toEqual(info);
    expect((await tp().zfs.get(info.dataset, ['vzdump-zfs:dirty']))['vzdump-zfs:dirty']).toBe('-');
    // the lock was released
    const w2 = await store.beginWrite(101);
    expect(w2.created).toBe(false);
    expect((await store.list(101)).at(-1)).toEqual(info);
    await expect(w2.commit(TS1, props('x'))).rejects.toBeInstanceOf(ConflictError);
    await w2.abort();
  });

  test('notes (UTF-8, spaces, newlines) and protected round-trip; forget refuses protected', async () => {
    const notes = '  Grüße aus Köln ✓\nzweite Zeile\twith tab\n100% done - ok  ';
    await store.setNotes(101, TS1, notes);
    expect((await store.get(101, TS1)).notes).toBe(notes);
    const raw = await tp().zfs.get(`${tp().root}/101@vzdump-${TS1}`, ['vzdump-zfs:notes']);
    expect(raw['vzdump-zfs:notes']).toMatch(/^[\x20-\x7e]+$/);
    await store.setNotes(101, TS1, '-');
    expect((await store.get(101, TS1)).notes).toBe('-');
    await store.setNotes(101, TS1, '');
    expect((await store.get(101, TS1)).notes).toBe('');
    await expect(store.setNotes(101, TS1, 'x'.repeat(9000))).rejects.toBeInstanceOf(UsageError);
    await expect(store.setNotes(101, TS3, 'x')).rejects.toBeInstanceOf(NotFoundError);

    await store.setProtected(101, TS1, true);
    expect((await store.get(101, TS1)).protected).toBe(true);
    const err = await store.forget(101, TS1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect((err as Error).message).toMatch(/protected/);
    expect(await store.list(101)).toHaveLength(1);
    await store.setProtected(101, TS1, false);
    expect((await store.get(101, TS1)).protected).toBe(false);
  });

  test('notes and protected given at commit are stored', async () => {
    const w = await store.beginWrite(103);
    await writeFile(join(w.dir, 'f'), 'x');
    const info = await w.commit(TS1, props('a.vma', { notes: 'line 1\nline 2 ✓', protected: true }));
    expect(info.notes).toBe('line 1\nline 2 ✓');
    expect(info.protected).toBe(true);
    expect(info.extra).toEqual({});
  });

  test('abort after writes puts the files back to the last snapshot', async () => {
    const w = await store.beginWrite(101);
    const before = await readFile(join(w.dir, 'disk.raw'));
    await writeFile(join(w.dir, 'disk.raw'), Buffer.alloc(65536, 2));
    await writeFile(join(w.dir, 'new-file'), 'garbage');
    await rm(join(w.dir, 'qemu-server.conf'));
    await w.abort();
    await w.abort(); // idempotent
    expect(await readFile(join(w.dir, 'disk.raw'))).toEqual(before);
    expect((await readdir(w.dir)).sort()).toEqual(['disk.raw', 'qemu-server.conf']);
    expect((await tp().zfs.get(w.dataset, ['vzdump-zfs:dirty']))['vzdump-zfs:dirty']).toBe('-');
    expect((await store.list(101)).map((b) => b.timestamp)).toEqual([TS1]);
  });

  test('abort on a fresh guest destroys its dataset', async () => {
    const w = await store.beginWrite(104);
    expect(w.created).toBe(true);
    await writeFile(join(w.dir, 'f'), 'partial');
    await w.abort();
    expect(await tp().zfs.exists(w.dataset)).toBe(false);
    expect(await store.list(104)).toEqual([]);
  });

  /** Snapshot short names of a guest, oldest first. */
  const snapNames = async (vmid: number): Promise<string[]> =>
    (await tp().zfs.list(store.guestDataset(vmid), { type: 'snapshot', depth: 1, props: [] })).map((r) => r.name.split('@')[1]!);
  /** Waits for the next whole second: zfs `creation` has a resolution of one second. */
  const nextSecond = () => new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 50));
  /** A guest's first backup, at TS1: one 64 KiB disk file of byte 1, committed. */
  const firstBackup = async (vmid: number): Promise<void> => {
    const w = await store.beginWrite(vmid);
    await writeFile(join(w.dir, 'disk.raw'), Buffer.alloc(65536, 1));
    await w.commit(TS1, props('a.vma'));
  };

  test('abort drops snapshots other tools took during the write, and goes back to one they took between writes', async () => {
    await firstBackup(110);
    await nextSecond();
    await tp().zfs.snapshot(`${store.guestDataset(110)}@autosnap-before`); // e.g. zfs-auto-snapshot, sanoid
    await nextSecond();
    const w = await store.beginWrite(110);
    await writeFile(join(w.dir, 'disk.raw'), Buffer.alloc(65536, 2));
    await tp().zfs.snapshot(`${w.dataset}@autosnap-during`); // half-written state
    await writeFile(join(w.dir, 'disk.raw'), Buffer.alloc(65536, 3));
    await w.abort();
    expect(await readFile(join(w.dir, 'disk.raw'))).toEqual(Buffer.alloc(65536, 1));
    expect(await snapNames(110)).toEqual([`vzdump-${TS1}`, 'autosnap-before']);
    expect((await tp().zfs.get(w.dataset, ['vzdump-zfs:dirty']))['vzdump-zfs:dirty']).toBe('-');
    expect((await store.list(110)).map((b) => b.timestamp)).toEqual([TS1]);
    await tp().zfs.destroy(w.dataset, { recursive: true }); // later tests count the guests
  });

  test('abort after every backup of the guest was forgotten destroys the dataset (its digests describe no backup)', async () => {
    await firstBackup(111);
    await store.forget(111, TS1);
    expect(await tp().zfs.exists(store.guestDataset(111))).toBe(true); // kept as the base of the next ingest
    const w = await store.beginWrite(111);
    expect(w.created).toBe(false);
    await writeFile(join(w.dir, 'disk.raw'), Buffer.alloc(65536, 2));
    await tp().zfs.snapshot(`${w.dataset}@autosnap-during`);
    await w.abort();
    expect(await tp().zfs.exists(w.dataset)).toBe(false);
    const w2 = await store.beginWrite(111);
    expect(w2.created).toBe(true);
    await w2.abort();
  });

  test.each([
    [
      113,
      'committed',
      async (w: GuestWrite) => {
        await w.commit(TS2, props('b.vma'));
      },
    ],
    [
      114,
      'whose commit was cut short (the snapshot taken, the process dead before it recorded the commit, then recovered)',
      async (w: GuestWrite) => {
        await store.snapshotWithProps(`${w.dataset}@vzdump-${TS2}`, store.encodeProps(props('b.vma')));
        await w.abort();
        expect(await snapNames(114)).toEqual([`vzdump-${TS1}`, 'autosnap-mid', `vzdump-${TS2}`]);
      },
    ],
  ])('a snapshot another tool took during the write of a backup that was then forgotten is no state to go back to (guest %i: %s)', async (vmid, _how, commitDay2) => {
    await firstBackup(vmid);
    await nextSecond();
    const w2 = await store.beginWrite(vmid);
    await writeFile(join(w2.dir, 'disk.raw'), Buffer.alloc(65536, 2));
    await tp().zfs.snapshot(`${w2.dataset}@autosnap-mid`); // half of day 2 written
    await writeFile(join(w2.dir, 'disk.raw'), Buffer.alloc(65536, 3));
    await nextSecond();
    await commitDay2(w2);
    await store.forget(vmid, TS2);
    await nextSecond();
    const w3 = await store.beginWrite(vmid);
    await writeFile(join(w3.dir, 'disk.raw'), Buffer.alloc(65536, 4));
    await w3.abort();
    // back to day 1, not to the half-written autosnap-mid
    expect(await snapNames(vmid)).toEqual([`vzdump-${TS1}`]);
    expect(await readFile(join(w3.dir, 'disk.raw'))).toEqual(Buffer.alloc(65536, 1));
    await tp().zfs.destroy(w3.dataset, { recursive: true }); // later tests count the guests
  });

  test('a write whose commit snapshot was taken is never undone past it', async () => {
    const w = await store.beginWrite(112);
    await writeFile(join(w.dir, 'disk.raw'), Buffer.alloc(65536, 1));
    // the backup is committed, but the process dies before it clears the dirty mark
    await store.snapshotWithProps(`${w.dataset}@vzdump-${TS1}`, store.encodeProps(props('a.vma')));
    await tp().zfs.snapshot(`${w.dataset}@autosnap-after`);
    await w.abort();
    expect(await snapNames(112)).toEqual([`vzdump-${TS1}`]);
    expect(await readFile(join(w.dir, 'disk.raw'))).toEqual(Buffer.alloc(65536, 1));
    expect((await store.list(112)).map((b) => b.timestamp)).toEqual([TS1]);
    await tp().zfs.destroy(w.dataset, { recursive: true }); // later tests count the guests
  });

  test('forget checks protection under the catalog lock, so a protect that gets in first wins', async () => {
    await firstBackup(115);
    // another protect or forget of this guest is under way: ours waits for it
    const held = await acquireLock(lockDir, `${encodeURIComponent(tp().root)}.115.catalog`);
    const forgetting = store.forget(115, TS1).then(
      () => 'destroyed',
      (e: unknown) => e,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(await tp().zfs.exists(`${store.guestDataset(115)}@vzdump-${TS1}`)).toBe(true);
    // what that other one did: protect the backup forget had already looked at
    await tp().zfs.set(`${store.guestDataset(115)}@vzdump-${TS1}`, { 'vzdump-zfs:protected': '1' });
    await held.release();
    const result = await forgetting;
    expect(result).toBeInstanceOf(ConflictError);
    expect((result as Error).message).toBe(`backup '115/${TS1}' is protected - remove the protection first`);
    expect((await store.get(115, TS1)).protected).toBe(true);
    // protect waits the same way, and then goes ahead
    const held2 = await acquireLock(lockDir, `${encodeURIComponent(tp().root)}.115.catalog`);
    const unprotecting = store.setProtected(115, TS1, false);
    await new Promise((r) => setTimeout(r, 300));
    expect((await store.get(115, TS1)).protected).toBe(true);
    await held2.release();
    await unprotecting;
    expect((await store.get(115, TS1)).protected).toBe(false);
    await store.forget(115, TS1);
    await tp().zfs.destroy(store.guestDataset(115), { recursive: true }); // later tests count the guests
  });

  describe('crash recovery', () => {
    let childJs: string;
    let out: string;
    afterAll(async () => {
      await rm(out, { recursive: true, force: true });
    });
    beforeAll(async () => {
      // bundle the real store code into a plain node script the child runs
      out = await mkdtemp(join(tmpdir(), 'vzdump-zfs-child-'));
      childJs = join(out, 'child.js');
      const src = resolve(__dirname, '../../src/store');
      buildSync({
        stdin: {
          contents: `
            import { BackupStore } from ${JSON.stringify(join(src, 'store'))};
            import { Zfs } from ${JSON.stringify(join(src, 'zfs'))};
            import { writeFileSync } from 'node:fs';
            import { join } from 'node:path';
            const [root, lockDir, vmid] = process.argv.slice(2);
            new BackupStore(new Zfs(), root, { lockDir }).beginWrite(Number(vmid)).then((w) => {
              writeFileSync(join(w.dir, 'disk.raw'), Buffer.alloc(65536, 9));
              writeFileSync(join(w.dir, 'crash-leftover'), 'x');
              process.stdout.write('ready ' + w.dir + '\\n');
              setInterval(() => {}, 1000);
            }, (e) => { console.error(e); process.exit(3); });`,
          resolveDir: src,
          loader: 'ts',
        },
        bundle: true,
        platform: 'node',
        format: 'cjs',
        outfile: childJs,
        logLevel: 'silent',
      });
    });

    /** Runs the child until it has written into the guest, then SIGKILLs it. */
    async function crashingWrite(vmid: number): Promise<void> {
      const child = spawn(process.execPath, [childJs, tp().root, lockDir, String(vmid)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      await new Promise<void>((res, rej) => {
        child.stdout.on('data', (b: Buffer) => {
          out += b.toString();
          if (out.includes('\n')) res();
        });
        child.once('exit', (code) => rej(new Error(`child exited ${code} before writing: ${err}`)));
      });
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
      // the child's lock and dirty mark are left behind
      const dirty = (await tp().zfs.get(`${tp().root}/${vmid}`, ['vzdump-zfs:dirty']))['vzdump-zfs:dirty'];
      expect(dirty).toMatch(dirtyMark(child.pid!));
    }

    test('a killed write is rolled back by the next beginWrite (guest with backups)', async () => {
      const committed = await readFile(join(tp().mountRoot, 'back ups', '101', 'disk.raw'));
      await crashingWrite(101);
      expect((await store.list(101)).map((b) => b.timestamp)).toEqual([TS1]);
      const w = await store.beginWrite(101);
      expect(w.created).toBe(false);
      expect(await readFile(join(w.dir, 'disk.raw'))).toEqual(committed);
      expect((await readdir(w.dir)).sort()).toEqual(['disk.raw', 'qemu-server.conf']);
      expect((await tp().zfs.get(w.dataset, ['vzdump-zfs:dirty']))['vzdump-zfs:dirty']).toMatch(dirtyMark(process.pid));
      await w.abort();
    });

    test('recovery after a kill also drops a snapshot another tool took of the half-written state', async () => {
      const committed = await readFile(join(tp().mountRoot, 'back ups', '101', 'disk.raw'));
      const before = await snapNames(101);
      await nextSecond();
      await crashingWrite(101);
      await tp().zfs.snapshot(`${tp().root}/101@autosnap-crash`);
      const w = await store.beginWrite(101);
      expect(await snapNames(101)).toEqual(before);
      expect(await readFile(join(w.dir, 'disk.raw'))).toEqual(committed);
      expect(await readdir(w.dir)).not.toContain('crash-leftover');
      await w.abort();
    });

    test('a killed first write of a guest is destroyed by the next beginWrite', async () => {
      await crashingWrite(105);
      expect(await store.list(105)).toEqual([]);
      const w = await store.beginWrite(105);
      expect(w.created).toBe(true);
      expect(await readdir(w.dir)).toEqual([]);
      await w.abort();
    });

    test('a backup snapshot that never got its properties is dropped on recovery', async () => {
      const ds = `${tp().root}/101`;
      const snaps = () => tp().zfs.list(ds, { type: 'snapshot', depth: 1, props: [] }).then((r) => r.map((x) => x.name));
      const before = await snaps();
      await crashingWrite(101);
      await tp().zfs.snapshot(`${ds}@vzdump-${TS3}`); // crashed between snapshot and its properties
      expect((await store.list(101)).map((b) => b.timestamp)).toEqual([TS1]);
      const w = await store.beginWrite(101);
      expect(await snaps()).toEqual(before);
      expect(await readdir(w.dir)).not.toContain('crash-leftover');
      await w.abort();
    });
  });

  test('openSnapshot shows the snapshot bytes, not the live dataset; release cleans up', async () => {
    const w = await store.beginWrite(101);
    const v1 = await readFile(join(w.dir, 'disk.raw'));
    await writeFile(join(w.dir, 'disk.raw'), Buffer.alloc(65536, 3));
    await w.commit(TS2, props('b.vma'));
    const w2 = await store.beginWrite(101);
    await writeFile(join(w2.dir, 'disk.raw'), Buffer.alloc(65536, 4)); // uncommitted live change

    const view1 = await store.openSnapshot(101, TS1);
    const view2 = await store.openSnapshot(101, TS2);
    expect(await readFile(join(view1.dir, 'disk.raw'))).toEqual(v1);
    expect(await readFile(join(view2.dir, 'disk.raw'))).toEqual(Buffer.alloc(65536, 3));
    await expect(writeFile(join(view1.dir, 'x'), 'no')).rejects.toThrow();
    // views never show up as guests or backups
    expect((await store.list()).map((b) => `${b.vmid}/${b.timestamp}`)).toEqual([`101/${TS1}`, `101/${TS2}`, `103/${TS1}`]);
    await view1.release();
    await view2.release();
    await view2.release(); // idempotent
    await w2.abort();
    expect(await readFile(join(w2.dir, 'disk.raw'))).toEqual(Buffer.alloc(65536, 3));
    expect(await clonesLeft(tp().zfs, tp().root)).toEqual([]);
    await expect(store.openSnapshot(101, TS3)).rejects.toBeInstanceOf(NotFoundError);
  });

  test('stale clones of dead processes are cleaned up on next use', async () => {
    const f = await tp().zfs.features(`${tp().root}/101`);
    const tmp = `${tp().root}/${TMP_DATASET}`;
    await tp().zfs.create(tmp, {}, { parents: true }).catch(() => undefined);
    // pid 2^22+1 is above the default pid_max, so it is never alive
    const stale = `${tmp}/101-${TS1}-dead`;
    await tp().zfs.clone(`${tp().root}/101@vzdump-${TS1}`, stale, { readonly: 'on', 'vzdump-zfs:owner': `4194305@${hostname()}` });
    const live = `${tmp}/101-${TS1}-live`;
    await tp().zfs.clone(`${tp().root}/101@vzdump-${TS1}`, live, { readonly: 'on', 'vzdump-zfs:owner': `${process.pid}@${hostname()}` });
    const view = await store.openSnapshot(101, TS2);
    await view.release();
    if (f.snapdir) await store.cleanStaleClones(); // no clone was needed for the view
    expect(await tp().zfs.exists(stale)).toBe(false);
    expect(await tp().zfs.exists(live)).toBe(true);
    // a snapshot with a live clone cannot be forgotten: say so
    await expect(store.forget(101, TS1)).rejects.toBeInstanceOf(ConflictError);
    await tp().zfs.destroy(live);
  });

  test('forget is refused while a view of the backup is open (clone or .zfs/snapshot)', async () => {
    const view = await store.openSnapshot(101, TS2);
    // no file of the view is open right now: the view itself must keep the snapshot
    await expect(store.forget(101, TS2)).rejects.toBeInstanceOf(ConflictError);
    expect(await readFile(join(view.dir, 'disk.raw'))).toEqual(Buffer.alloc(65536, 3));
    expect((await store.list(101)).map((b) => b.timestamp)).toEqual([TS1, TS2]);
    await view.release();
    await view.release(); // idempotent
  });

  test('list ignores datasets and snapshots it does not own', async () => {
    const { zfs, root } = tp();
    await zfs.create(`${root}/not a guest`);
    await zfs.snapshot(`${root}/not a guest@vzdump-${TS1}`, { 'vzdump-zfs:format': '1', 'vzdump-zfs:archive': 'x' });
    await zfs.snapshot(`${root}/101@manual`, { 'vzdump-zfs:format': '1', 'vzdump-zfs:archive': 'x' });
    await zfs.snapshot(`${root}/103@vzdump-${TS3}`); // our name, no properties: not a backup
    await zfs.create(`${root}/0101`);
    expect((await store.list()).map((b) => `${b.vmid}/${b.timestamp}`)).toEqual([`101/${TS1}`, `101/${TS2}`, `103/${TS1}`]);
    await expect(store.get(103, TS3)).rejects.toBeInstanceOf(NotFoundError);
  });

  test('forget destroys the snapshot and keeps the guest dataset and its files', async () => {
    await store.forget(101, TS1);
    await store.forget(101, TS2);
    expect(await store.list(101)).toEqual([]);
    await expect(store.forget(101, TS2)).rejects.toBeInstanceOf(NotFoundError);
    const ds = `${tp().root}/101`;
    expect(await tp().zfs.exists(ds)).toBe(true);
    // manual snapshot is still there; a new write works on the kept files
    const w = await store.beginWrite(101);
    expect(w.created).toBe(false);
    expect(await store.list(101)).toEqual([]);
    expect(await readFile(join(w.dir, 'disk.raw'))).toEqual(Buffer.alloc(65536, 3));
    await w.abort();
  });

  test('where `zfs snapshot -o` is refused, commit snapshots first and sets the properties after', async () => {
    class NoDashO extends Zfs {
      override async snapshot(snap: string, p: Record<string, string> = {}): Promise<void> {
        if (Object.keys(p).length > 0) {
          throw new ZfsCommandError(`zfs snapshot '${snap}' failed: invalid option 'o'`, ['zfs', 'snapshot'], 2, "invalid option 'o'");
        }
        return super.snapshot(snap);
      }
    }
    const s2 = new BackupStore(new NoDashO(), tp().root, { lockDir });
    const w = await s2.beginWrite(107);
    await writeFile(join(w.dir, 'f'), 'x');
    const info = await w.commit(TS1, props('c.vma', { notes: 'n ✓' }));
    expect(info).toMatchObject({ archive: 'c.vma', notes: 'n ✓', format: '1' });
    expect(await store.get(107, TS1)).toEqual(info);
  });

  test('a guest dataset without a usable mountpoint is a ConfigError, and the dataset is left as it was', async () => {
    const ds = store.guestDataset(108);
    await tp().zfs.create(ds, { mountpoint: 'none' }, { parents: true });
    try {
      for (let attempt = 0; attempt < 2; attempt++) {
        // the second attempt gets the same answer: the lock was given back and no recovery ran
        const err = await store.beginWrite(108).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ConfigError);
        expect((err as Error).message).toBe(`dataset '${ds}' has no usable mountpoint ('none') - set one on '${tp().root}'`);
        expect(await tp().zfs.exists(ds)).toBe(true);
        expect(await tp().zfs.get(ds, ['vzdump-zfs:dirty'])).toEqual({ 'vzdump-zfs:dirty': '-' });
      }
    } finally {
      await tp().zfs.destroy(ds);
    }
  });

  test('a new guest under a root without a mountpoint is a ConfigError, and its dataset is removed', async () => {
    const root = `${tp().pool}/nomount`;
    await tp().zfs.create(root, { mountpoint: 'none' });
    try {
      const s2 = new BackupStore(tp().zfs, root, { lockDir });
      await expect(s2.beginWrite(109)).rejects.toThrow(`dataset '${root}/109' has no usable mountpoint ('none') - set one on '${root}'`);
      expect(await tp().zfs.exists(`${root}/109`)).toBe(false);
    } finally {
      await tp().zfs.destroy(root, { recursive: true });
    }
  });

  test('bad input is refused before touching zfs', async () => {
    expect(() => store.guestDataset(0)).toThrow(UsageError);
    expect(() => store.guestDataset(1.5)).toThrow(UsageError);
    expect(() => store.snapshotName('2025-01-01')).toThrow(UsageError);
    const w = await store.beginWrite(106);
    await expect(w.commit(TS1, props('a', { 'bad-key': 1 }))).rejects.toBeInstanceOf(UsageError);
    await expect(w.commit(TS1, props('a', { format: '2' }))).rejects.toBeInstanceOf(UsageError);
    await expect(w.commit(TS1, { archive: '', ctime: 1, size: 1 })).rejects.toBeInstanceOf(UsageError);
    await w.abort();
    expect(await tp().zfs.exists(w.dataset)).toBe(false);
  });
});
