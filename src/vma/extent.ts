/**
 * Decodes, validates and encodes the 512-byte VMA extent header and its 59 blockinfo words
 * (vma-format.md §3.1, §3.2, §3.3).
 *
 * Pure: Buffers in, plain objects out and back; no I/O, no reference kept to the input buffer.
 * Owns the checks that need nothing but the header itself and the archive uuid: magic,
 * reserved1 == 0, uuid, the MD5 over the 512 bytes with the md5 field zeroed, and block
 * accounting (block_count equals the blocks the masks of non-empty slots announce; slots with
 * dev_id 0 consume nothing). Leaves device checks (known dev_id, cluster in range, no block past
 * the device end, duplicates, completeness) to reader.ts, which knows the devices. Cannot verify
 * cluster data: VMA stores no data checksum (§1).
 *
 * Check order: the fields with a check of their own first (magic, reserved1, uuid), then the MD5,
 * then accounting, so a bit flip is reported against the field it hit whenever that field can tell.
 */
import { createHash } from 'node:crypto';
import { VmaFormatError } from '../errors';
import {
  BLOCKINFO_SIZE,
  BLOCK_SIZE,
  CLUSTERS_PER_EXTENT,
  EXTENT_HEADER_SIZE,
  MD5_SIZE,
  OFF_BI_CLUSTER,
  OFF_BI_DEV_ID,
  OFF_BI_MASK,
  OFF_BI_RESERVED,
  OFF_EXT_BLOCKINFO,
  OFF_EXT_BLOCK_COUNT,
  OFF_EXT_MAGIC,
  OFF_EXT_MD5,
  OFF_EXT_RESERVED1,
  OFF_EXT_UUID,
  UUID_SIZE,
  VMA_EXTENT_MAGIC,
} from './constants';

/** One blockinfo slot (§3.2). `devId` 0 = empty slot. */
export interface BlockInfo {
  /** bit j set = 4 KiB block j of the cluster is stored (LSB = first block) */
  mask: number;
  /** the reserved byte; the writer puts 0, the reader ignores it */
  reserved: number;
  devId: number;
  cluster: number;
}

/** A decoded extent header. */
export interface ExtentHeader {
  uuid: Buffer;
  /** number of 4 KiB blocks following the header */
  blockCount: number;
  /** decode: all 59 slots, empty ones included; encode: up to 59, the rest is written as empty */
  entries: BlockInfo[];
}

const ZERO_MD5 = Buffer.alloc(MD5_SIZE);

/** Number of set bits in a 16-bit mask (= 4 KiB blocks stored for that cluster). */
export function popcount16(mask: number): number {
  let v = mask - ((mask >>> 1) & 0x5555);
  v = (v & 0x3333) + ((v >>> 2) & 0x3333);
  v = (v + (v >>> 4)) & 0x0f0f;
  return (v + (v >>> 8)) & 0x1f;
}

/** Blocks the entries' masks announce; empty slots (dev_id 0) count nothing (§3.3). */
export function blocksAnnounced(entries: readonly BlockInfo[]): number {
  let n = 0;
  for (const e of entries) if (e.devId !== 0) n += popcount16(e.mask);
  return n;
}

/** Bytes of an extent on the wire: header plus its blocks. */
export function extentByteSize(blockCount: number): number {
  return EXTENT_HEADER_SIZE + blockCount * BLOCK_SIZE;
}

/** MD5 over the 512-byte extent header with the md5 field taken as zero. Does not modify `buf`. */
export function extentHeaderMd5(buf: Buffer): Buffer {
  return createHash('md5')
    .update(buf.subarray(0, OFF_EXT_MD5))
    .update(ZERO_MD5)
    .update(buf.subarray(OFF_EXT_MD5 + MD5_SIZE, EXTENT_HEADER_SIZE))
    .digest();
}

/**
 * Decodes and checks one extent header. `buf` holds at least 512 bytes; `offset` is where the
 * extent starts in the stream (for error messages); `archiveUuid` is the VMA header's uuid.
 * Errors: VmaFormatError with `offset` = the extent's start and `field` one of magic, reserved1,
 * uuid, md5sum, block_count.
 */
export function decodeExtentHeader(buf: Buffer, archiveUuid: Buffer, offset: number): ExtentHeader {
  const fail = (message: string, field: string): never => {
    throw new VmaFormatError(`extent at offset ${offset}: ${message}`, offset, field);
  };
  if (buf.length < EXTENT_HEADER_SIZE) fail(`truncated header (${buf.length} of ${EXTENT_HEADER_SIZE} bytes)`, 'magic');
  if (!buf.subarray(OFF_EXT_MAGIC, OFF_EXT_MAGIC + 4).equals(VMA_EXTENT_MAGIC)) {
    fail(`wrong magic (found ${buf.subarray(0, 4).toString('hex')}, expected 564d4145)`, 'magic');
  }
  const reserved1 = buf.readUInt16BE(OFF_EXT_RESERVED1);
  if (reserved1 !== 0) fail(`reserved1 is ${reserved1}, expected 0`, 'reserved1');
  const uuid = buf.subarray(OFF_EXT_UUID, OFF_EXT_UUID + UUID_SIZE);
  if (!uuid.equals(archiveUuid)) fail('uuid differs from the archive uuid (extent from another archive?)', 'uuid');
  if (!extentHeaderMd5(buf).equals(buf.subarray(OFF_EXT_MD5, OFF_EXT_MD5 + MD5_SIZE))) {
    fail('MD5 mismatch (extent header corrupted)', 'md5sum');
  }
  const blockCount = buf.readUInt16BE(OFF_EXT_BLOCK_COUNT);
  const entries: BlockInfo[] = new Array(CLUSTERS_PER_EXTENT);
  for (let i = 0; i < CLUSTERS_PER_EXTENT; i++) {
    const at = OFF_EXT_BLOCKINFO + i * BLOCKINFO_SIZE;
    entries[i] = {
      mask: buf.readUInt16BE(at + OFF_BI_MASK),
      reserved: buf[at + OFF_BI_RESERVED],
      devId: buf[at + OFF_BI_DEV_ID],
      cluster: buf.readUInt32BE(at + OFF_BI_CLUSTER),
    };
  }
  const announced = blocksAnnounced(entries);
  if (announced !== blockCount) {
    fail(`block_count ${blockCount} but the cluster masks announce ${announced} blocks`, 'block_count');
  }
  return { uuid: Buffer.from(uuid), blockCount, entries };
}

/**
 * Encodes an extent header: magic, reserved1 0, block_count and uuid as given, up to 59 entries
 * (the rest empty), MD5 last. Does not check that block_count matches the masks, so tests can
 * craft inconsistent extents with a valid MD5; the writer always passes the right count.
 */
export function encodeExtentHeader(h: ExtentHeader): Buffer {
  if (h.entries.length > CLUSTERS_PER_EXTENT) {
    throw new RangeError(`internal error: ${h.entries.length} entries exceed ${CLUSTERS_PER_EXTENT} per extent`);
  }
  const buf = Buffer.alloc(EXTENT_HEADER_SIZE);
  VMA_EXTENT_MAGIC.copy(buf, OFF_EXT_MAGIC);
  buf.writeUInt16BE(h.blockCount, OFF_EXT_BLOCK_COUNT);
  h.uuid.copy(buf, OFF_EXT_UUID, 0, UUID_SIZE);
  writeBlockInfos(buf, h.entries);
  extentHeaderMd5(buf).copy(buf, OFF_EXT_MD5);
  return buf;
}

function writeBlockInfos(buf: Buffer, entries: readonly BlockInfo[]): void {
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    const at = OFF_EXT_BLOCKINFO + i * BLOCKINFO_SIZE;
    buf.writeUInt16BE(e.mask, at + OFF_BI_MASK);
    buf[at + OFF_BI_RESERVED] = e.reserved;
    buf[at + OFF_BI_DEV_ID] = e.devId;
    buf.writeUInt32BE(e.cluster, at + OFF_BI_CLUSTER);
  }
}
