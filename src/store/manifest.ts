/**
 * The manifest of one backup: `vzdump-zfs.json` in the guest dataset, written by ingest as the
 * last file before the snapshot and read by restore and verify. It says which files of the
 * dataset belong to the backup (configs, disks with their digest files, log), their sizes and
 * digests, and where the backup came from (archive name, compression and size, uuid and ctime of
 * the original archive).
 *
 * Owns the file's name, shape and validation; knows nothing of how the files were produced.
 * Layout version 1 (docs/design.md "Changes").
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IntegrityError, IoError } from '../errors';
import { type DigestAlgorithm, digestAlgorithmOf } from './cluster-digest';

export const MANIFEST_FILE = 'vzdump-zfs.json';
export const MANIFEST_FORMAT = 1;

export interface ManifestConfig {
  name: string;
  size: number;
  sha256: string;
}

export interface ManifestDisk {
  /** position in the original archive's device table (1-based dev_id) */
  id: number;
  name: string;
  size: number;
  /** raw image, relative to the dataset root */
  image: string;
  /** per-cluster digest file, relative to the dataset root */
  digests: string;
  /** algorithm of that file; absent in manifests written before BLAKE3, which readManifest fills in as 'sha256' */
  digestAlgorithm: DigestAlgorithm;
  /** SHA-256 over the digest file: one value that fingerprints the whole disk */
  digestOfDigests: string;
}

export interface Manifest {
  format: number;
  vmid: number;
  subtype: 'qemu';
  /** original vzdump file name */
  archive: string;
  /** YYYY_MM_DD-HH_MM_SS from the archive name */
  timestamp: string;
  /** epoch seconds of the backup (from the name, in the PVE node's time zone) */
  ctime: number;
  source: {
    compression: string;
    /** bytes of the archive file as it was pulled */
    size: number;
    /** VMA header uuid (hex) and ctime, kept so a rebuilt archive carries them again */
    uuid: string;
    vmaCtime: number;
  };
  configs: ManifestConfig[];
  disks: ManifestDisk[];
  /** side files kept with the backup, relative names (`vzdump.log`, `vzdump.notes`) */
  log?: string;
  notes?: string;
  ingest: { tool: string; at: number; seconds: number; clustersUnchanged: number; clustersWritten?: number; blocksWritten: number };
}

export function writeManifest(dir: string, m: Manifest): void {
  const p = path.join(dir, MANIFEST_FILE);
  try {
    fs.writeFileSync(p, JSON.stringify(m, null, 2) + '\n');
  } catch (e) {
    throw new IoError(`cannot write manifest '${p}': ${(e as Error).message}`, p, { cause: e });
  }
}

export function readManifest(dir: string, what: string): Manifest {
  const p = path.join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = fs.readFileSync(p, 'utf8');
  } catch (e) {
    throw new IoError(`backup ${what} has no readable manifest '${MANIFEST_FILE}': ${(e as Error).message}`, p, { cause: e });
  }
  let m: Manifest;
  try {
    m = JSON.parse(text) as Manifest;
  } catch (e) {
    throw new IntegrityError(`manifest of backup ${what} is not valid JSON: ${(e as Error).message}`, p, { cause: e });
  }
  if (m.format !== MANIFEST_FORMAT) {
    throw new IntegrityError(`manifest of backup ${what} has layout version ${m.format}, this tool reads ${MANIFEST_FORMAT}`, p);
  }
  if (!Array.isArray(m.configs) || !Array.isArray(m.disks)) {
    throw new IntegrityError(`manifest of backup ${what} lacks its config or disk list`, p);
  }
  for (const d of m.disks) {
    const algorithm = digestAlgorithmOf(d.digestAlgorithm);
    if (algorithm === undefined) {
      throw new IntegrityError(`manifest of backup ${what}: disk '${d.name}' has unknown digest algorithm '${String(d.digestAlgorithm)}'`, p);
    }
    d.digestAlgorithm = algorithm;
  }
  return m;
}
