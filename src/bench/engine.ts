/**
 * The ingest engine alone, for the store benchmark's "pool out of the way" rows: the same data
 * pass as `vzdump-zfs ingest` (src/ingest/sync-disks.ts: decompressor, VMA reader, digests, writes
 * of changed clusters) into a plain directory on tmpfs, with no ZFS, no zfs-fuse daemon sharing the
 * cores, no `zfs` commands and no snapshot. The issue asks for the ingest "within 1.5x of the floor
 * when the pool is not the bottleneck"; on a host where ZFS is a FUSE daemon on two cores the pool
 * always takes CPU from the ingest, so these rows show what the engine itself costs.
 *
 * Owns the child-process side (`node dist/bench.js --engine-sync ARCHIVE DIR RECORDSIZE`, run
 * under GNU time by store.ts like every other measurement) and the choice of its directory.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadClusterDigests } from '../store/cluster-digest';
import { syncArchiveDisks } from '../ingest/sync-disks';

/** The argument of dist/bench.js that runs runEngineSync in a child. */
export const ENGINE_SYNC_ARG = '--engine-sync';

/** What the child prints on stdout, one JSON line: the counts ingest prints too, to cross-check. */
export interface EngineSyncReport {
  clustersWritten: number;
  blocksWritten: number;
}

/**
 * Child side: syncs the archive's disks into `dir` as an ingest with records of `recordSize` bytes
 * would (64K: changed clusters written whole), and prints the counts.
 */
export async function runEngineSync(archive: string, dir: string, recordSize: number): Promise<void> {
  await loadClusterDigests();
  const { disks } = await syncArchiveDisks(archive, dir, { label: path.basename(archive), diskSync: { recordSize } });
  const report: EngineSyncReport = { clustersWritten: 0, blocksWritten: 0 };
  for (const d of disks) {
    report.clustersWritten += d.stats.clustersWritten;
    report.blocksWritten += d.stats.blocksWritten;
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

const TMPFS_MAGIC = 0x01021994;

/**
 * Where the engine rows write: `VZBENCH_ENGINE_DIR` or /dev/shm, which must be tmpfs (memory: no
 * disk and no pool in the way) with room for `bytes`. Returns the directory, or why there is none.
 */
export function engineRoot(bytes: number): { dir: string } | { skip: string } {
  const want = process.env.VZBENCH_ENGINE_DIR || '/dev/shm';
  if (want === 'none') return { skip: 'VZBENCH_ENGINE_DIR=none' };
  let st: fs.StatsFs;
  try {
    st = fs.statfsSync(want);
  } catch (e) {
    return { skip: `${want}: ${(e as Error).message}` };
  }
  if (st.type !== TMPFS_MAGIC) return { skip: `${want} is not tmpfs` };
  const free = st.bavail * st.bsize;
  if (free < bytes) return { skip: `${want} has ${(free / 2 ** 30).toFixed(1)} GiB free, the disk data needs ${(bytes / 2 ** 30).toFixed(1)} GiB` };
  return { dir: want };
}
