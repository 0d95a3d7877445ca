/**
 * Cluster digests: the per-64 KiB-cluster hash kept beside every disk image in a guest dataset
 * (`disk-<dev>.b3`, 32 bytes per cluster), written by ingest and checked by verify.
 *
 * Owns the algorithms and the digest file names. BLAKE3 is what ingest writes; SHA-256
 * (`disk-<dev>.sha256`) is what layout 1.0 wrote and stays readable, so older snapshots still
 * verify and restore. Both are collision resistant: a guest cannot craft a changed cluster that
 * ingest mistakes for an unchanged one.
 *
 * BLAKE3 comes from the native binding `@napi-rs/blake-hash-linux-x64-gnu` (SIMD; about 4x the
 * speed of OpenSSL's SHA-256 with SHA-NI, see docs/design.md) where it is installed (an optional
 * dependency: linux amd64 with glibc, i.e. every PVE host), otherwise from hash-wasm's
 * WebAssembly build, which gives the same digests at a fifth of the speed. Call
 * `loadClusterDigests()` once before hashing; the `vma` commands never load either.
 */
import { createHash } from 'node:crypto';
import { VzError } from '../errors';
import { CLUSTER_SIZE, ZERO_CLUSTER } from '../vma/constants';

export type DigestAlgorithm = 'sha256' | 'blake3';

/** What new ingests record. */
export const DIGEST_ALGORITHM: DigestAlgorithm = 'blake3';
export const DIGEST_SIZE = 32;

const FILE_SUFFIX: Record<DigestAlgorithm, string> = { blake3: 'b3', sha256: 'sha256' };

/** `disk-<dev>.b3` (or `.sha256` for layout-1.0 digests). */
export function digestFileName(devName: string, alg: DigestAlgorithm = DIGEST_ALGORITHM): string {
  return `disk-${devName}.${FILE_SUFFIX[alg]}`;
}

/** True for any digest file name this or an earlier version wrote. */
export function isDigestFileName(name: string): boolean {
  return /^disk-.+\.(b3|sha256)$/.test(name);
}

type Blake3 = (input: Uint8Array) => Buffer;
let blake3Fn: Blake3 | undefined;

const NATIVE_BINDING = '@napi-rs/blake-hash-linux-x64-gnu';

/** Loads the BLAKE3 implementation (native when installed, else WebAssembly); idempotent. */
export async function loadClusterDigests(): Promise<void> {
  if (blake3Fn) return;
  if (process.platform === 'linux' && process.arch === 'x64' && process.env.VZDUMP_ZFS_BLAKE3 !== 'wasm') {
    try {
      blake3Fn = (require(NATIVE_BINDING) as { blake3: Blake3 }).blake3;
      return;
    } catch {
      // not installed (or musl): fall through to the WebAssembly build
    }
  }
  const { createBLAKE3 } = await import('hash-wasm');
  const h = await createBLAKE3();
  blake3Fn = (input) => Buffer.from(h.init().update(input).digest('binary'));
}

function blake3(): Blake3 {
  if (!blake3Fn) throw new VzError('internal error: BLAKE3 used before loadClusterDigests()');
  return blake3Fn;
}

/** Digest of one cluster; a short `data` (a disk's last cluster) is hashed as if zero-padded to 64 KiB. */
export function hashCluster(alg: DigestAlgorithm, data: Uint8Array): Buffer {
  if (data.length < CLUSTER_SIZE) {
    const padded = Buffer.alloc(CLUSTER_SIZE);
    padded.set(data);
    data = padded;
  }
  if (alg === 'blake3') return blake3()(data);
  return createHash('sha256').update(data).digest();
}

const zeroDigests = new Map<DigestAlgorithm, Buffer>();

/** Digest of an all-zero cluster (a hole), computed once per algorithm. */
export function zeroClusterDigest(alg: DigestAlgorithm): Buffer {
  let d = zeroDigests.get(alg);
  if (!d) {
    d = hashCluster(alg, ZERO_CLUSTER);
    zeroDigests.set(alg, d);
  }
  return d;
}

/** Parses a manifest's `digestAlgorithm` (absent in layout 1.0 = sha256). */
export function digestAlgorithmOf(value: unknown): DigestAlgorithm | undefined {
  if (value === undefined) return 'sha256';
  return value === 'sha256' || value === 'blake3' ? value : undefined;
}
