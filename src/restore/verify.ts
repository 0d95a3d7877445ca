/**
 * Checks a stored backup against what ingest recorded: every 64 KiB cluster of every disk image
 * against its SHA-256 in the digest file, the digest file against the manifest's digest of
 * digests, and every config against its SHA-256. VMA carries no data checksum, so this is the only
 * end-to-end check that the bytes a restore would send are the bytes that came in.
 *
 * Reads through the store's read-only snapshot view; never writes. Fails with IntegrityError
 * naming the first bad file and cluster.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IntegrityError } from '../errors';
import type { BackupStore } from '../store/store';
import { readManifest } from '../store/manifest';

const CLUSTER = 65536;
const DIGEST = 32;
const READ = 1 << 20;

export interface VerifyResult {
  disks: number;
  clusters: number;
  configs: number;
}

async function verifyDisk(image: string, digests: string, size: number, digestOfDigests: string): Promise<number> {
  const sums = await fs.promises.open(digests, 'r');
  const img = await fs.promises.open(image, 'r');
  try {
    const clusters = Math.ceil(size / CLUSTER);
    const st = await sums.stat();
    if (st.size !== clusters * DIGEST) throw new IntegrityError(`digest file '${digests}' has ${st.size} bytes, expected ${clusters * DIGEST}`, digests);
    const whole = createHash('sha256');
    const buf = Buffer.alloc(READ);
    const sumBuf = Buffer.alloc((READ / CLUSTER) * DIGEST);
    let cluster = 0;
    for (let pos = 0; pos < size; pos += READ) {
      const want = Math.min(READ, size - pos);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await img.read(buf, got, want - got, pos + got);
        if (bytesRead === 0) throw new IntegrityError(`disk image '${image}' ends at ${pos + got} of ${size} bytes`, image);
        got += bytesRead;
      }
      const n = Math.ceil(want / CLUSTER);
      await sums.read(sumBuf, 0, n * DIGEST, cluster * DIGEST);
      whole.update(sumBuf.subarray(0, n * DIGEST));
      for (let i = 0; i < n; i++) {
        const lo = i * CLUSTER;
        const hi = Math.min(lo + CLUSTER, want);
        const h = createHash('sha256').update(buf.subarray(lo, hi));
        if (hi - lo < CLUSTER) h.update(Buffer.alloc(CLUSTER - (hi - lo)));
        if (!h.digest().equals(sumBuf.subarray(i * DIGEST, (i + 1) * DIGEST))) {
          throw new IntegrityError(`disk image '${image}': cluster ${cluster + i} (offset ${(cluster + i) * CLUSTER}) does not match its digest`, image);
        }
      }
      cluster += n;
    }
    if (whole.digest('hex') !== digestOfDigests) {
      throw new IntegrityError(`digest file '${digests}' does not match the manifest`, digests);
    }
    return clusters;
  } finally {
    await img.close();
    await sums.close();
  }
}

/** Checks the files of one backup in `dir` (a snapshot view) against its manifest. */
export async function verifyBackupDir(dir: string, what: string): Promise<VerifyResult> {
  const m = readManifest(dir, what);
  for (const c of m.configs) {
    const p = path.join(dir, c.name);
    const sum = createHash('sha256').update(fs.readFileSync(p)).digest('hex');
    if (sum !== c.sha256) throw new IntegrityError(`backup ${what}: config '${c.name}' does not match its digest`, p);
  }
  let clusters = 0;
  for (const d of m.disks) {
    clusters += await verifyDisk(path.join(dir, d.image), path.join(dir, d.digests), d.size, d.digestOfDigests);
  }
  return { disks: m.disks.length, clusters, configs: m.configs.length };
}

export async function verifyBackup(store: BackupStore, vmid: number, timestamp: string): Promise<VerifyResult> {
  const view = await store.openSnapshot(vmid, timestamp);
  try {
    return await verifyBackupDir(view.dir, `${vmid}/${timestamp}`);
  } finally {
    await view.release();
  }
}
