/**
 * Checks a stored backup against what ingest recorded: every 64 KiB cluster of every disk image
 * against its digest in the digest file (BLAKE3, or SHA-256 for backups of layout 1.0), the digest file against the manifest's digest of
 * digests, and every config against its SHA-256. VMA carries no data checksum, so this is the only
 * end-to-end check that the bytes a restore would send are the bytes that came in.
 *
 * Reads through the store's read-only snapshot view; never writes. Fails with IntegrityError
 * naming the first bad file and cluster.
 */
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { IntegrityError, stoppedError } from '../errors';
import type { BackupStore } from '../store/store';
import { readManifest } from '../store/manifest';
import { type DigestAlgorithm, hashCluster, loadClusterDigests } from '../store/cluster-digest';
import { CLUSTER_SIZE as CLUSTER } from '../vma/constants';
import { clusterCount } from '../vma/names';
import { DigestEntries } from './digest-entries';
import { imageClusters } from './image-clusters';
import { readConfigs } from './restore';

export interface VerifyResult {
  disks: number;
  clusters: number;
  configs: number;
}

async function verifyDisk(
  image: string,
  digests: string,
  alg: DigestAlgorithm,
  size: number,
  digestOfDigests: string,
  signal: AbortSignal | undefined,
): Promise<number> {
  const clusters = clusterCount(size);
  // every entry is asked for in order, so the batches read are the whole file, in order
  const whole = createHash('sha256');
  const sums = await DigestEntries.open(digests, clusters, (bytes) => whole.update(bytes));
  try {
    // the image is read by the same read-ahead reader restore uses; clusters arrive in order
    for await (const c of imageClusters([{ path: image, size }], { sizeCheck: 'exact', signal })) {
      if (!hashCluster(alg, c.data).equals(await sums.get(c.cluster))) {
        throw new IntegrityError(`disk image '${image}': cluster ${c.cluster} (offset ${c.cluster * CLUSTER}) does not match its digest`, image);
      }
    }
    if (whole.digest('hex') !== digestOfDigests) {
      throw new IntegrityError(`digest file '${digests}' does not match the manifest`, digests);
    }
    return clusters;
  } finally {
    await sums.close();
  }
}

/** Checks the files of one backup in `dir` (a snapshot view) against its manifest; `signal` stops it. */
export async function verifyBackupDir(dir: string, what: string, signal?: AbortSignal): Promise<VerifyResult> {
  const m = readManifest(dir, what);
  await loadClusterDigests();
  readConfigs(dir, m, what);
  let clusters = 0;
  for (const d of m.disks) {
    clusters += await verifyDisk(path.join(dir, d.image), path.join(dir, d.digests), d.digestAlgorithm, d.size, d.digestOfDigests, signal);
  }
  return { disks: m.disks.length, clusters, configs: m.configs.length };
}

export async function verifyBackup(store: BackupStore, vmid: number, timestamp: string, opts: { signal?: AbortSignal } = {}): Promise<VerifyResult> {
  const view = await store.openSnapshot(vmid, timestamp);
  try {
    return await verifyBackupDir(view.dir, `${vmid}/${timestamp}`, opts.signal);
  } catch (e) {
    if (opts.signal?.aborted) throw stoppedError(`verify of backup ${vmid}/${timestamp}`, e);
    throw e;
  } finally {
    await view.release();
  }
}
