/**
 * Throwaway file-backed ZFS pools for platform tests, one per test file.
 *
 * Owns: pool names `vzt<pid><rand>` and temp dirs `vzdump-zfs-test-*` it creates, which it destroys
 * and removes in afterAll. Leaves starting zfs-fuse to global-setup.ts.
 * Gating: {@link describeZfs} runs its tests whenever `zfs` works; when it cannot (not root, no
 * binary, no daemon) it registers one test that prints why, instead of silently skipping.
 */

import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Zfs } from '../../src/store/zfs';
import { createFilePool, destroyPool } from '../../src/store/pool';
import { TMP_DATASET } from '../../src/store/store';

export interface TestPool {
  /** Pool name, e.g. `vzt12345ab12`. */
  pool: string;
  /** Store root dataset (not created): `<pool>/back ups` unless another name was asked for. */
  root: string;
  /** Mountpoint of the pool's root dataset. */
  mountRoot: string;
  /** Temp dir holding the vdev file and the mountpoint. */
  dir: string;
  zfs: Zfs;
  destroy(): Promise<void>;
}

/** Where global-setup.ts records the pid of a zfs-fuse it started, for global-teardown.ts. */
export const ZFS_FUSE_PID_FILE = join(tmpdir(), `vzdump-zfs-jest-zfs-fuse.${process.pid}.pid`);

let availability: { ok: boolean; reason: string } | undefined;

/** Why zfs cannot be used here, or '' when it can. Cached; synchronous (for describe gating). */
export function zfsUnavailableReason(): string {
  if (!availability) {
    if (process.getuid && process.getuid() !== 0) {
      availability = { ok: false, reason: 'not running as root (zpool create needs root)' };
    } else {
      const r = spawnSync('zfs', ['list', '-H', '-o', 'name'], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
      if (r.error) availability = { ok: false, reason: `cannot run zfs: ${r.error.message}` };
      else if (r.status !== 0) availability = { ok: false, reason: `zfs list failed: ${(r.stderr || '').trim().split('\n')[0]}` };
      else availability = { ok: true, reason: '' };
    }
  }
  return availability.reason;
}

export function zfsAvailable(): boolean {
  return zfsUnavailableReason() === '';
}

/**
 * `describe` that runs on a real pool when zfs works, and otherwise reports the reason as its only
 * test (printed, and visible in the test list) rather than skipping silently.
 */
export function describeZfs(name: string, fn: () => void): void {
  const reason = zfsUnavailableReason();
  if (!reason) {
    describe(name, fn);
    return;
  }
  describe(name, () => {
    test(`not run: ZFS unavailable (${reason})`, () => {
      console.warn(`${name}: ZFS platform tests not run: ${reason}`);
      expect(zfsAvailable()).toBe(false);
    });
  });
}

/** Creates a fresh pool on a sparse file in a new temp dir. Size default 256 MiB. */
export async function createTestPool(opts: { rootName?: string; sizeBytes?: number; zfs?: Zfs } = {}): Promise<TestPool> {
  const zfs = opts.zfs ?? new Zfs();
  const pool = `vzt${process.pid}${randomBytes(3).toString('hex')}`;
  const dir = await mkdtemp(join(tmpdir(), 'vzdump-zfs-test-'));
  const vdev = join(dir, 'vdev');
  const mountRoot = join(dir, 'mnt');
  await createFilePool(pool, vdev, opts.sizeBytes ?? 256 * 1024 * 1024, mountRoot, { zfs });
  let destroyed = false;
  return {
    pool,
    root: `${pool}/${opts.rootName ?? 'back ups'}`,
    mountRoot,
    dir,
    zfs,
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      await destroyPool(pool, { zfs, vdevPath: vdev });
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Temporary clones of backups (the zfs-fuse way to read a snapshot) still there under the store `root`. */
export async function clonesLeft(zfs: Zfs, root: string): Promise<string[]> {
  const tmp = `${root}/${TMP_DATASET}`;
  if (!(await zfs.exists(tmp))) return [];
  return (await zfs.list(tmp, { type: 'filesystem', props: [] })).map((r) => r.name).filter((n) => n !== tmp);
}

/**
 * Registers beforeAll/afterAll creating one pool for the enclosing describe block and destroying it
 * (with its files) afterwards. Returns a getter usable inside tests.
 */
export function withTestPool(opts: { rootName?: string; sizeBytes?: number } = {}): () => TestPool {
  let tp: TestPool | undefined;
  beforeAll(async () => {
    tp = await createTestPool(opts);
  });
  afterAll(async () => {
    await tp?.destroy();
  });
  return () => {
    if (!tp) throw new Error('test pool not created yet (use it inside tests, not at describe time)');
    return tp;
  };
}
