/**
 * Decodes, validates and encodes the VMA header (vma-format.md §2, §2.1, §2.2, §5).
 *
 * Pure: Buffers in, plain objects out and back; no I/O, no clock (uuid and ctime are passed in, so
 * encoding is deterministic). Owns every header check: magic, header_size bounds, the MD5 over
 * header_size bytes with the md5 field zeroed, version, blob buffer bounds, blob pointers that must
 * hit a blob start exactly, NUL-terminated names. Errors are VmaFormatError with the offset of the
 * faulty field and its name; messages carry no file label (the reader adds it).
 *
 * Stricter than the reference reader, for things no real writer produces: a config slot with only
 * one of its two pointers set, a device slot with a name but no size (or a size but no name), a
 * name pointer that does not resolve, a name with an embedded NUL, dev_id 255 in use, a device
 * larger than 256 TiB. Device names are reported as they are (see names.ts for file-name safety);
 * a device called `vmstate` is accepted as an ordinary device.
 */
import { createHash } from 'node:crypto';
import { VmaFormatError } from '../errors';
import { BlobTableBuilder, decodeBlobString, parseBlobBuffer } from './blobs';
import {
  DEV_INFO_SIZE,
  DEV_INFO_SLOTS,
  HEADER_ALIGN,
  HEADER_FIXED_SIZE,
  HEADER_PREFIX_SIZE,
  MAX_BLOB_SIZE,
  MAX_CONFIGS,
  MAX_DEV_ID,
  MAX_DEVICE_SIZE,
  MAX_HEADER_SIZE,
  MD5_SIZE,
  OFF_BLOB_BUFFER_OFFSET,
  OFF_BLOB_BUFFER_SIZE,
  OFF_CONFIG_DATA,
  OFF_CONFIG_NAMES,
  OFF_CTIME,
  OFF_DEV_INFO,
  OFF_DEV_NAME_PTR,
  OFF_DEV_SIZE,
  OFF_HEADER_SIZE,
  OFF_MAGIC,
  OFF_MD5,
  OFF_UUID,
  OFF_VERSION,
  UUID_SIZE,
  VMA_MAGIC,
  VMA_VERSION,
  WRITER_MAX_HEADER_SIZE,
} from './constants';
import type { VmaConfig, VmaDevice, VmaHeader } from './types';

/** What encodeHeader needs: a VmaHeader without the computed header_size. */
export type VmaHeaderInput = Omit<VmaHeader, 'headerSize'>;

const ZERO_MD5 = Buffer.alloc(MD5_SIZE);

/** Magic numbers of the compressors vzdump uses, for a helpful hint on a wrong VMA magic. */
const COMPRESSED_MAGICS: { magic: Buffer; name: string }[] = [
  { magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), name: 'zstd' },
  { magic: Buffer.from([0x1f, 0x8b]), name: 'gzip' },
  { magic: Buffer.from([0x89, 0x4c, 0x5a, 0x4f]), name: 'lzop' },
  { magic: Buffer.from('BZh'), name: 'bzip2' },
];

function fail(message: string, offset: number, field: string): never {
  throw new VmaFormatError(`vma header: ${message}`, offset, field);
}

/**
 * MD5 over `buf[0, headerSize)` with the md5 field taken as zero (§2, §8.3). Does not modify `buf`.
 */
export function headerMd5(buf: Buffer, headerSize: number): Buffer {
  return createHash('md5')
    .update(buf.subarray(0, OFF_MD5))
    .update(ZERO_MD5)
    .update(buf.subarray(OFF_MD5 + MD5_SIZE, headerSize))
    .digest();
}

/**
 * Checks the magic against the first bytes of the stream (`buf` may be shorter than 4 bytes; only
 * what is there is compared). Names the compressor when the input looks compressed.
 */
export function checkHeaderMagic(buf: Buffer): void {
  const n = Math.min(buf.length, VMA_MAGIC.length);
  if (buf.subarray(0, n).equals(VMA_MAGIC.subarray(0, n))) return;
  const found = buf.subarray(0, Math.min(buf.length, 4)).toString('hex').replace(/(..)(?!$)/g, '$1 ');
  const comp = COMPRESSED_MAGICS.find((c) => buf.length >= c.magic.length && buf.subarray(0, c.magic.length).equals(c.magic));
  const hint = comp ? ` - is the archive still ${comp.name}-compressed?` : '';
  fail(`not a VMA archive: wrong magic (found ${found}, expected 56 4d 41 00)${hint}`, OFF_MAGIC, 'magic');
}

/**
 * Reads header_size from the first 60 bytes of the header, after checking the magic, and checks
 * it is in (12288, MAX_HEADER_SIZE]. The reader needs this to know how many bytes to buffer.
 */
export function readHeaderSize(prefix: Buffer): number {
  if (prefix.length < HEADER_PREFIX_SIZE) {
    throw new RangeError(`internal error: readHeaderSize needs ${HEADER_PREFIX_SIZE} bytes`);
  }
  checkHeaderMagic(prefix);
  const headerSize = prefix.readUInt32BE(OFF_HEADER_SIZE);
  if (headerSize <= HEADER_FIXED_SIZE || headerSize > MAX_HEADER_SIZE) {
    fail(
      `header_size ${headerSize} out of range (expected ${HEADER_FIXED_SIZE + 1}..${MAX_HEADER_SIZE})`,
      OFF_HEADER_SIZE,
      'header_size',
    );
  }
  return headerSize;
}

/**
 * Decodes and validates a complete VMA header. `buf` holds at least header_size bytes from the
 * start of the stream; only the first header_size are used. Checks run in the reference order
 * (magic, header_size, MD5, version, blob bounds, pointers), so a header that fails its MD5
 * never gets further. The result holds copies, never views into `buf`.
 */
export function decodeHeader(buf: Buffer): VmaHeader {
  if (buf.length < HEADER_PREFIX_SIZE) checkHeaderMagic(buf);
  if (buf.length < HEADER_PREFIX_SIZE) fail(`truncated: ${buf.length} bytes`, 0, 'header_size');
  const headerSize = readHeaderSize(buf);
  if (buf.length < headerSize) {
    fail(`truncated: have ${buf.length} of header_size ${headerSize} bytes`, buf.length, 'header_size');
  }
  if (!headerMd5(buf, headerSize).equals(buf.subarray(OFF_MD5, OFF_MD5 + MD5_SIZE))) {
    fail('MD5 mismatch (header corrupted)', OFF_MD5, 'md5sum');
  }
  const version = buf.readUInt32BE(OFF_VERSION);
  if (version !== VMA_VERSION) {
    fail(`unsupported version ${version} (expected ${VMA_VERSION})`, OFF_VERSION, 'version');
  }
  const ctimeBig = buf.readBigInt64BE(OFF_CTIME);
  if (ctimeBig > BigInt(Number.MAX_SAFE_INTEGER) || ctimeBig < BigInt(Number.MIN_SAFE_INTEGER)) {
    fail(`ctime ${ctimeBig} out of range`, OFF_CTIME, 'ctime');
  }
  const blobOffset = buf.readUInt32BE(OFF_BLOB_BUFFER_OFFSET);
  const blobSize = buf.readUInt32BE(OFF_BLOB_BUFFER_SIZE);
  if (blobOffset < HEADER_FIXED_SIZE) {
    fail(`blob_buffer_offset ${blobOffset} below ${HEADER_FIXED_SIZE}`, OFF_BLOB_BUFFER_OFFSET, 'blob_buffer_offset');
  }
  if (blobOffset + blobSize > headerSize) {
    fail(
      `blob buffer (offset ${blobOffset}, size ${blobSize}) runs past header_size ${headerSize}`,
      OFF_BLOB_BUFFER_SIZE,
      'blob_buffer_size',
    );
  }
  const blobs = parseBlobBuffer(buf.subarray(blobOffset, blobOffset + blobSize));

  const blobAt = (ptr: number, what: string, at: number, field: string): Buffer => {
    const blob = blobs.get(ptr);
    if (blob === undefined) fail(`${what}: pointer ${ptr} does not point at a blob`, at, field);
    return blob;
  };
  const stringAt = (ptr: number, what: string, at: number, field: string): string => {
    const s = decodeBlobString(blobAt(ptr, what, at, field));
    if (s === null) fail(`${what}: not a NUL-terminated string`, at, field);
    return s;
  };

  const configs: VmaConfig[] = [];
  for (let i = 0; i < MAX_CONFIGS; i++) {
    const nameAt = OFF_CONFIG_NAMES + 4 * i;
    const dataAt = OFF_CONFIG_DATA + 4 * i;
    const namePtr = buf.readUInt32BE(nameAt);
    const dataPtr = buf.readUInt32BE(dataAt);
    if (namePtr === 0 && dataPtr === 0) continue;
    if (namePtr === 0) fail(`config slot ${i}: data pointer without a name pointer`, nameAt, 'config_names');
    if (dataPtr === 0) fail(`config slot ${i}: name pointer without a data pointer`, dataAt, 'config_data');
    const name = stringAt(namePtr, `config slot ${i} name`, nameAt, 'config_names');
    const data = Buffer.from(blobAt(dataPtr, `config slot ${i} data`, dataAt, 'config_data'));
    configs.push({ name, data });
  }

  const devices: VmaDevice[] = [];
  for (let id = 0; id < DEV_INFO_SLOTS; id++) {
    const at = OFF_DEV_INFO + id * DEV_INFO_SIZE;
    const namePtr = buf.readUInt32BE(at + OFF_DEV_NAME_PTR);
    const sizeBig = buf.readBigUInt64BE(at + OFF_DEV_SIZE);
    if (namePtr === 0 && sizeBig === 0n) continue;
    const what = `device slot ${id}`;
    if (id === 0 || id > MAX_DEV_ID) fail(`${what} is in use (valid dev_ids are 1..${MAX_DEV_ID})`, at, 'dev_info');
    if (namePtr === 0) fail(`${what}: size ${sizeBig} but no name`, at + OFF_DEV_NAME_PTR, 'devname_ptr');
    if (sizeBig === 0n) fail(`${what}: name but size 0`, at + OFF_DEV_SIZE, 'size');
    if (sizeBig > BigInt(MAX_DEVICE_SIZE)) {
      fail(`${what}: size ${sizeBig} exceeds ${MAX_DEVICE_SIZE} (256 TiB)`, at + OFF_DEV_SIZE, 'size');
    }
    const name = stringAt(namePtr, `${what} name`, at + OFF_DEV_NAME_PTR, 'devname_ptr');
    devices.push({ id, name, size: Number(sizeBig) });
  }

  return {
    uuid: Buffer.from(buf.subarray(OFF_UUID, OFF_UUID + UUID_SIZE)),
    ctime: Number(ctimeBig),
    configs,
    devices,
    headerSize,
  };
}

/**
 * Encodes a header the way the reference writer does (§4 step 3): configs' name and data blobs in
 * order, then device names in dev_id order; blob_buffer_offset 12288; blob_buffer_size = bytes
 * used; header_size = 12288 + blob buffer rounded up to 512; MD5 last. Deterministic.
 * Throws VmaFormatError (offset/field of the header field that cannot hold the value) for input
 * the format cannot express.
 */
export function encodeHeader(h: VmaHeaderInput): Buffer {
  if (h.uuid.length !== UUID_SIZE) fail(`uuid must be ${UUID_SIZE} bytes, got ${h.uuid.length}`, OFF_UUID, 'uuid');
  if (!Number.isSafeInteger(h.ctime)) fail(`ctime ${h.ctime} is not an integer`, OFF_CTIME, 'ctime');
  if (h.configs.length > MAX_CONFIGS) {
    fail(`${h.configs.length} configs exceed the limit of ${MAX_CONFIGS}`, OFF_CONFIG_NAMES, 'config_names');
  }
  const blobs = new BlobTableBuilder();
  const blob = (add: () => number, what: string, at: number, field: string): number => {
    try {
      return add();
    } catch (e) {
      if (e instanceof RangeError) fail(`${what} is larger than ${MAX_BLOB_SIZE} bytes`, at, field);
      throw e;
    }
  };
  const checkName = (name: string, what: string, at: number, field: string): void => {
    if (name.includes('\0')) fail(`${what} '${name.replace(/\0/g, '\\0')}' contains NUL`, at, field);
  };

  const configPtrs: [number, number][] = h.configs.map((c, i) => {
    const nameAt = OFF_CONFIG_NAMES + 4 * i;
    checkName(c.name, `config name`, nameAt, 'config_names');
    const namePtr = blob(() => blobs.addString(c.name), `config name '${c.name}'`, nameAt, 'config_names');
    const dataPtr = blob(() => blobs.add(c.data), `config '${c.name}'`, OFF_CONFIG_DATA + 4 * i, 'config_data');
    return [namePtr, dataPtr];
  });

  const devices = [...h.devices].sort((a, b) => a.id - b.id);
  const devPtrs: number[] = [];
  for (let i = 0; i < devices.length; i++) {
    const d = devices[i];
    if (!Number.isInteger(d.id) || d.id < 1 || d.id > MAX_DEV_ID) {
      fail(`dev_id ${d.id} of device '${d.name}' out of range 1..${MAX_DEV_ID}`, OFF_DEV_INFO, 'dev_info');
    }
    const at = OFF_DEV_INFO + d.id * DEV_INFO_SIZE;
    if (i > 0 && devices[i - 1].id === d.id) fail(`dev_id ${d.id} used twice`, at, 'dev_info');
    if (!Number.isSafeInteger(d.size) || d.size < 1 || d.size > MAX_DEVICE_SIZE) {
      fail(`device '${d.name}': size ${d.size} out of range 1..${MAX_DEVICE_SIZE}`, at + OFF_DEV_SIZE, 'size');
    }
    checkName(d.name, 'device name', at + OFF_DEV_NAME_PTR, 'devname_ptr');
    devPtrs.push(blob(() => blobs.addString(d.name), `device name '${d.name}'`, at + OFF_DEV_NAME_PTR, 'devname_ptr'));
  }

  const blobSize = blobs.size;
  const headerSize = HEADER_FIXED_SIZE + Math.ceil(blobSize / HEADER_ALIGN) * HEADER_ALIGN;
  if (headerSize > WRITER_MAX_HEADER_SIZE) {
    fail(`header of ${headerSize} bytes exceeds the limit of ${WRITER_MAX_HEADER_SIZE}`, OFF_HEADER_SIZE, 'header_size');
  }
  const buf = Buffer.alloc(headerSize);
  VMA_MAGIC.copy(buf, OFF_MAGIC);
  buf.writeUInt32BE(VMA_VERSION, OFF_VERSION);
  h.uuid.copy(buf, OFF_UUID);
  buf.writeBigInt64BE(BigInt(h.ctime), OFF_CTIME);
  buf.writeUInt32BE(HEADER_FIXED_SIZE, OFF_BLOB_BUFFER_OFFSET);
  buf.writeUInt32BE(blobSize, OFF_BLOB_BUFFER_SIZE);
  buf.writeUInt32BE(headerSize, OFF_HEADER_SIZE);
  configPtrs.forEach(([namePtr, dataPtr], i) => {
    buf.writeUInt32BE(namePtr, OFF_CONFIG_NAMES + 4 * i);
    buf.writeUInt32BE(dataPtr, OFF_CONFIG_DATA + 4 * i);
  });
  devices.forEach((d, i) => {
    const at = OFF_DEV_INFO + d.id * DEV_INFO_SIZE;
    buf.writeUInt32BE(devPtrs[i], at + OFF_DEV_NAME_PTR);
    buf.writeBigUInt64BE(BigInt(d.size), at + OFF_DEV_SIZE);
  });
  blobs.build().copy(buf, HEADER_FIXED_SIZE);
  headerMd5(buf, headerSize).copy(buf, OFF_MD5);
  return buf;
}
