/**
 * Test generators for the VMA codec: a seeded PRNG, disk images with a mix of zero, data and
 * half-zero clusters, cluster lists in shuffled/interleaved order, ways to feed a Buffer to the
 * reader (whole, byte by byte, odd slices), collectors, and a crafter that assembles archives
 * from hand-made extents through the pure encoders (for layouts our writer never produces).
 */
import { createHash } from 'node:crypto';
import { encodeExtentHeader, type BlockInfo } from '../../../src/vma/extent';
import { encodeHeader, headerMd5, type VmaHeaderInput } from '../../../src/vma/header';
import { readVma, expandCluster, type ReadVmaOptions } from '../../../src/vma/reader';
import { writeVma, type WriteVmaOptions } from '../../../src/vma/writer';
import type { VmaCluster, VmaClusterData, VmaHeader } from '../../../src/vma/types';

export const KiB = 1024;
export const CL = 65536;
export const BL = 4096;

import { prng } from '../../../src/util/prng';

export { prng };

export function randInt(rnd: () => number, n: number): number {
  return rnd() % n;
}

export function randomBytesSeeded(rnd: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i + 4 <= n; i += 4) b.writeUInt32LE(rnd(), i);
  for (let i = n - (n % 4); i < n; i++) b[i] = rnd() & 0xff;
  return b;
}

export type ImageKind = 'mixed' | 'zero' | 'data';

/**
 * A disk image of `size` bytes. 'mixed': per cluster one of all-zero, all-data, some blocks
 * zero, or a single non-zero byte (tests per-block zero detection at block edges).
 */
export function makeImage(size: number, rnd: () => number, kind: ImageKind = 'mixed'): Buffer {
  const img = Buffer.alloc(size);
  if (kind === 'zero') return img;
  for (let off = 0; off < size; off += CL) {
    const n = Math.min(CL, size - off);
    const choice = kind === 'data' ? 1 : randInt(rnd, 4);
    if (choice === 1) randomBytesSeeded(rnd, n).copy(img, off);
    else if (choice === 2) {
      for (let b = 0; b * BL < n; b++) {
        if (rnd() & 1) randomBytesSeeded(rnd, Math.min(BL, n - b * BL)).copy(img, off + b * BL);
      }
    } else if (choice === 3) {
      img[off + randInt(rnd, n)] = 1 + randInt(rnd, 255);
    }
  }
  if (kind === 'data' && size > 0) img[size - 1] = 0xaa; // make sure the tail block is non-zero
  return img;
}

/** The clusters of one device image, in order; the last one short when size % 64 KiB != 0. */
export function clustersOf(devId: number, image: Buffer): VmaClusterData[] {
  const out: VmaClusterData[] = [];
  for (let c = 0; c * CL < image.length; c++) {
    out.push({ devId, cluster: c, data: image.subarray(c * CL, Math.min(image.length, (c + 1) * CL)) });
  }
  return out;
}

export function shuffle<T>(items: T[], rnd: () => number): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = randInt(rnd, i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Collects an async iterable of Buffers into one Buffer. */
export async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of it) parts.push(b);
  return Buffer.concat(parts);
}

/** Writes a whole archive with writeVma and returns it with the extents as yielded. */
export async function writeArchive(
  opts: WriteVmaOptions,
  clusters: VmaClusterData[],
): Promise<{ archive: Buffer; parts: Buffer[] }> {
  const parts: Buffer[] = [];
  for await (const b of writeVma(opts, clusters)) parts.push(b);
  return { archive: Buffer.concat(parts), parts };
}

export type FeedMode = 'whole' | 'bytes' | 'odd';

/** Feeds `buf` as one chunk, one byte per chunk, or in odd-sized slices (1..9973 bytes, seeded). */
export async function* feed(buf: Buffer, mode: FeedMode, seed = 1): AsyncGenerator<Buffer> {
  if (mode === 'whole') {
    yield buf;
    return;
  }
  if (mode === 'bytes') {
    for (let i = 0; i < buf.length; i++) yield buf.subarray(i, i + 1);
    return;
  }
  const rnd = prng(seed);
  const sizes = [1, 3, 511, 513, 4095, 4097, 65535, 65537, 9973, 7];
  let i = 0;
  for (let off = 0; off < buf.length; i++) {
    const n = sizes[(i + randInt(rnd, sizes.length)) % sizes.length];
    yield buf.subarray(off, Math.min(buf.length, off + n));
    off += n;
  }
}

export interface ReadResult {
  header: VmaHeader;
  clusters: VmaCluster[];
}

/** Reads a whole stream into memory (tests only). */
export async function readAll(input: AsyncIterable<Buffer | Uint8Array>, opts?: ReadVmaOptions): Promise<ReadResult> {
  let header: VmaHeader | undefined;
  const clusters: VmaCluster[] = [];
  for await (const r of readVma(input, opts)) {
    if (r.type === 'header') header = r.header;
    else clusters.push({ devId: r.devId, cluster: r.cluster, mask: r.mask, blocks: r.blocks });
  }
  if (header === undefined) throw new Error('no header record');
  return { header, clusters };
}

/** Rebuilds every device image (exact device size) from the clusters read. */
export function rebuildImages(r: ReadResult): Map<number, Buffer> {
  const images = new Map<number, Buffer>();
  for (const d of r.header.devices) images.set(d.id, Buffer.alloc(d.size));
  for (const c of r.clusters) {
    const img = images.get(c.devId)!;
    const full = expandCluster(c);
    full.copy(img, c.cluster * CL, 0, Math.min(CL, img.length - c.cluster * CL));
  }
  return images;
}

/** Reads an error thrown by an async function, failing the test if none is thrown. */
export async function errorOf(f: () => Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await f();
  } catch (e) {
    return e as Error & Record<string, unknown>;
  }
  throw new Error('expected an error, got success');
}

export interface CraftedExtent {
  entries: BlockInfo[];
  /** default: what the masks announce */
  blockCount?: number;
  /** default: the header uuid */
  uuid?: Buffer;
  /** the stored blocks; default: seeded random bytes of blockCount * 4096 */
  data?: Buffer;
}

/** Assembles an archive from a header and hand-made extents, through the pure encoders. */
export function craftArchive(header: VmaHeaderInput, extents: CraftedExtent[], seed = 7): Buffer {
  const rnd = prng(seed);
  const parts: Buffer[] = [encodeHeader(header)];
  for (const e of extents) {
    const announced = e.entries.reduce((n, x) => n + (x.devId === 0 ? 0 : popcount(x.mask)), 0);
    const blockCount = e.blockCount ?? announced;
    parts.push(encodeExtentHeader({ uuid: e.uuid ?? header.uuid, blockCount, entries: e.entries }));
    parts.push(e.data ?? randomBytesSeeded(rnd, blockCount * BL));
  }
  return Buffer.concat(parts);
}

export function popcount(mask: number): number {
  let n = 0;
  for (let j = 0; j < 16; j++) if (mask & (1 << j)) n++;
  return n;
}

/** Shorthand blockinfo. */
export function bi(devId: number, cluster: number, mask: number, reserved = 0): BlockInfo {
  return { devId, cluster, mask, reserved };
}

/** Recomputes the header MD5 in place after a test edited header fields. */
export function fixHeaderMd5(buf: Buffer): Buffer {
  const headerSize = buf.readUInt32BE(56);
  headerMd5(buf, headerSize).copy(buf, 32);
  return buf;
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export const UUID = Buffer.from('0123456789abcdef0123456789abcdef', 'hex');
