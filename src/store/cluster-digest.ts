/**
 * Cluster digests: the per-64 KiB-cluster hash kept beside every disk image in a guest dataset
 * (`disk-<dev>.b3`, 32 bytes per cluster), written by ingest and checked by verify.
 *
 * Owns the algorithms and the digest file names. BLAKE3 (native, SIMD: about 4x the speed of
 * OpenSSL's SHA-256 with SHA-NI here, see docs/design.md) is what ingest writes; SHA-256
 * (`disk-<dev>.sha256`) is what layout 1.0 wrote and stays readable, so older snapshots still
 * verify and restore. Both are collision resistant: a guest cannot craft a changed cluster that
 * ingest mistakes for an unchanged one. The native binding is loaded on first use only, so the
 * `vma` commands never need it.
 */
import { createHash } from 'node:crypto';
import { VzError } from '../errors';

export type DigestAlgorithm = 'sha256' | 'blake3';

/** What new ingests record. */
export const DIGEST_ALGORITHM: DigestAlgorithm = 'blake3';
export const DIGEST_SIZE = 32;
export const CLUSTER_SIZE = 65536;

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

function blake3(): Blake3 {
  if (!blake3Fn) {
    try {
      blake3Fn = (require('@napi-rs/blake-hash') as { blake3: Blake3 }).blake3;
    } catch (e) {
      throw new VzError(
        `cannot load the BLAKE3 binding (@napi-rs/blake-hash) for ${process.platform}-${process.arch}: ${(e as Error).message} - reinstall vzdump-zfs`,
        { cause: e },
      );
    }
  }
  return blake3Fn;
}

/** Digest of `data`, one whole cluster (a short last cluster must be zero-padded by the caller). */
export function hashCluster(alg: DigestAlgorithm, data: Uint8Array): Buffer {
  if (alg === 'blake3') return blake3()(data);
  return createHash('sha256').update(data).digest();
}

const zeroDigests = new Map<DigestAlgorithm, Buffer>();

/** Digest of an all-zero cluster (a hole), computed once per algorithm. */
export function zeroClusterDigest(alg: DigestAlgorithm): Buffer {
  let d = zeroDigests.get(alg);
  if (!d) {
    d = hashCluster(alg, Buffer.alloc(CLUSTER_SIZE));
    zeroDigests.set(alg, d);
  }
  return d;
}

/** Parses a manifest's `digestAlgorithm` (absent in layout 1.0 = sha256). */
export function digestAlgorithmOf(value: unknown): DigestAlgorithm | undefined {
  if (value === undefined) return 'sha256';
  return value === 'sha256' || value === 'blake3' ? value : undefined;
}
