/**
 * Parses and builds the VMA header's blob buffer (vma-format.md §2.1): u16 little-endian length
 * prefixed byte strings, addressed by their exact start offset, offset 0 reserved for "none".
 *
 * Pure: Buffers in, plain values out; no I/O. Owns the blob walk and string (NUL) rules; leaves
 * pointer validation and error reporting to header.ts, which knows which field pointed where.
 */
import { BLOB_LENGTH_SIZE, FIRST_BLOB_OFFSET, MAX_BLOB_SIZE } from './constants';

/**
 * Walks a blob buffer the way the reference reader does (RD `vma_reader_read_head`): from
 * offset 1 while a length prefix fits; a blob whose length runs past the end is not recorded but
 * is still stepped over. Returns blob start offset -> blob bytes (subarrays of `buf`).
 */
export function parseBlobBuffer(buf: Buffer): Map<number, Buffer> {
  const blobs = new Map<number, Buffer>();
  let pos = FIRST_BLOB_OFFSET;
  while (pos + BLOB_LENGTH_SIZE <= buf.length) {
    const len = buf.readUInt16LE(pos);
    const start = pos + BLOB_LENGTH_SIZE;
    if (start + len <= buf.length) blobs.set(pos, buf.subarray(start, start + len));
    pos = start + len;
  }
  return blobs;
}

/**
 * Decodes a string blob: it must end with its NUL terminator (RD `get_header_str`) and, stricter
 * than the reference, contain no other NUL. Returns null when the blob is not such a string.
 */
export function decodeBlobString(blob: Buffer): string | null {
  if (blob.length === 0 || blob[blob.length - 1] !== 0) return null;
  const body = blob.subarray(0, blob.length - 1);
  if (body.includes(0)) return null;
  return body.toString('utf8');
}

/** Encodes a string blob: UTF-8 bytes plus the terminating NUL. */
export function encodeBlobString(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
}

/** Appends blobs in order, like WR `allocate_header_blob`, and hands out their offsets. */
export class BlobTableBuilder {
  private readonly parts: Buffer[] = [Buffer.alloc(FIRST_BLOB_OFFSET)];
  private used = FIRST_BLOB_OFFSET;

  /** Bytes used so far, counting the leading pad byte (= blob_buffer_size). */
  get size(): number {
    return this.used;
  }

  /** Appends `data` and returns its blob offset. Throws RangeError for blobs over 65535 bytes. */
  add(data: Buffer): number {
    if (data.length > MAX_BLOB_SIZE) {
      throw new RangeError(`blob of ${data.length} bytes exceeds the limit of ${MAX_BLOB_SIZE}`);
    }
    const offset = this.used;
    const len = Buffer.alloc(BLOB_LENGTH_SIZE);
    len.writeUInt16LE(data.length, 0);
    this.parts.push(len, data);
    this.used += BLOB_LENGTH_SIZE + data.length;
    return offset;
  }

  /** Appends a NUL-terminated string blob and returns its offset. */
  addString(s: string): number {
    return this.add(encodeBlobString(s));
  }

  /** The blob buffer bytes (pad byte + blobs), exactly `size` long. */
  build(): Buffer {
    return Buffer.concat(this.parts, this.used);
  }
}
