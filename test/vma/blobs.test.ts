import { BlobTableBuilder, decodeBlobString, encodeBlobString, parseBlobBuffer } from '../../src/vma/blobs';

describe('BlobTableBuilder / parseBlobBuffer', () => {
  test('offsets start at 1 after a zero pad byte; lengths are u16 little-endian; round trip', () => {
    const t = new BlobTableBuilder();
    const a = t.addString('qemu-server.conf');
    const b = t.add(Buffer.from('x'.repeat(300)));
    const c = t.add(Buffer.alloc(0));
    const d = t.addString('drive-scsi0');
    expect([a, b, c, d]).toEqual([1, 1 + 2 + 17, 20 + 2 + 300, 322 + 2]);
    const buf = t.build();
    expect(buf.length).toBe(t.size);
    expect(buf.length).toBe(324 + 2 + 12);
    expect(buf[0]).toBe(0);
    expect([buf[b], buf[b + 1]]).toEqual([300 & 255, 300 >> 8]); // little-endian
    const blobs = parseBlobBuffer(buf);
    expect([...blobs.keys()]).toEqual([a, b, c, d]);
    expect(decodeBlobString(blobs.get(a)!)).toBe('qemu-server.conf');
    expect(blobs.get(b)!.toString()).toBe('x'.repeat(300));
    expect(blobs.get(c)!.length).toBe(0);
    expect(decodeBlobString(blobs.get(d)!)).toBe('drive-scsi0');
  });

  test('a blob running past the end is skipped and nothing after it is found', () => {
    const t = new BlobTableBuilder();
    t.addString('abc');
    const last = t.add(Buffer.from('0123456789'));
    const buf = t.build();
    const blobs = parseBlobBuffer(buf.subarray(0, buf.length - 1));
    expect(blobs.has(1)).toBe(true);
    expect(blobs.has(last)).toBe(false);
  });

  test('an empty or one-byte buffer holds no blobs; a trailing single byte is ignored', () => {
    expect(parseBlobBuffer(Buffer.alloc(0)).size).toBe(0);
    expect(parseBlobBuffer(Buffer.alloc(1)).size).toBe(0);
    expect(parseBlobBuffer(Buffer.alloc(2)).size).toBe(0);
    expect([...parseBlobBuffer(Buffer.from([0, 0, 0, 7])).keys()]).toEqual([1]); // one empty blob at 1
  });

  test('the largest blob is 65535 bytes', () => {
    const t = new BlobTableBuilder();
    expect(t.add(Buffer.alloc(65535, 1))).toBe(1);
    expect(parseBlobBuffer(t.build()).get(1)!.length).toBe(65535);
    expect(() => t.add(Buffer.alloc(65536))).toThrow(RangeError);
  });
});

describe('string blobs', () => {
  test('need the terminating NUL and no other', () => {
    expect(decodeBlobString(Buffer.from('abc\0'))).toBe('abc');
    expect(decodeBlobString(Buffer.from('\0'))).toBe('');
    expect(decodeBlobString(Buffer.from('abc'))).toBeNull();
    expect(decodeBlobString(Buffer.alloc(0))).toBeNull();
    expect(decodeBlobString(Buffer.from('a\0c\0'))).toBeNull();
  });
  test('UTF-8 round trip', () => {
    expect(decodeBlobString(encodeBlobString('drive-ä€'))).toBe('drive-ä€');
    expect(encodeBlobString('ab')).toEqual(Buffer.from([0x61, 0x62, 0]));
  });
});
