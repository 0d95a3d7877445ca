/**
 * Jest global setup: makes `zfs` usable for the platform tests.
 *
 * When running as root and `zfs` does not answer yet, starts zfs-fuse through ensureZfsRunning()
 * and records its pid in {@link ZFS_FUSE_PID_FILE} for global-teardown.ts, which stops exactly that
 * pid. When zfs already works (kernel ZFS or a running zfs-fuse), or cannot work (not root, no
 * binary), does nothing; test/helpers/zpool.ts then reports why platform tests did not run.
 */

import { writeFile } from 'node:fs/promises';
import { ensureZfsRunning } from '../../src/store/pool';
import { ZFS_FUSE_PID_FILE } from './zpool';

export default async function globalSetup(): Promise<void> {
  if (!process.getuid || process.getuid() !== 0) return;
  try {
    const d = await ensureZfsRunning({ timeoutMs: 30000 });
    if (d.started && d.pid) await writeFile(ZFS_FUSE_PID_FILE, `${d.pid}\n`);
  } catch (e) {
    // leave it to the tests to report "ZFS unavailable" with the reason
    console.warn(`global-setup: could not start zfs-fuse: ${(e as Error).message}`);
  }
}
