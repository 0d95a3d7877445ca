/**
 * Jest global teardown: stops the zfs-fuse that global-setup.ts started, and nothing else.
 *
 * Reads the pid global-setup recorded (same jest process, so the same file name), checks /proc
 * that it is still a zfs-fuse (not a reused pid), then TERM, wait, KILL. No file: nothing to do.
 */

import { readFile, rm } from 'node:fs/promises';
import { isZfsFuse, stopPid } from '../../src/store/pool';
import { ZFS_FUSE_PID_FILE } from './zpool';

export default async function globalTeardown(): Promise<void> {
  const text = await readFile(ZFS_FUSE_PID_FILE, 'utf8').catch(() => '');
  const m = /^(\d+)\s*$/.exec(text);
  if (!m) return;
  const pid = Number(m[1]);
  if (await isZfsFuse(pid)) await stopPid(pid);
  await rm(ZFS_FUSE_PID_FILE, { force: true });
}
