import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { VmaFormatError } from '../../src/errors';
import * as K from '../../src/vma/constants';
import { checkHeaderMagic, decodeHeader, encodeHeader, headerMd5, readHeaderSize, type VmaHeaderInput } from '../../src/vma/header';
import { fixHeaderMd5, UUID } from './helpers/vma-gen';

const sample = gunzipSync(readFileSync(join(__dirname, '../fixtures/pve-sample-truncated.vma.gz')));

const input: VmaHeaderInput = {
  uuid: UUID,
  ctime: 1767225600,
  configs: [
    { name: 'qemu-server.conf', data: Buffer.from('memory: 2048\n#qmdump#map:scsi0:drive-scsi0:local-zfs:raw:\n') },
    { name: 'qemu-server.fw', data: Buffer.from('[OPTIONS]\nenable: 1\n') },
    { name: 'empty.conf', data: Buffer.alloc(0) },
  ],
  devices: [
    { id: 1, name: 'drive-scsi0', size: 10 * 2 ** 30 },
    { id: 2, name: 'drive-efidisk0', size: 528384 },
    { id: 5, name: 'drive-virtio1-äöü', size: 512 },
  ],
};

function expectVmaError(f: () => unknown, field: string, offset?: number): VmaFormatError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(VmaFormatError);
    const err = e as VmaFormatError;
    expect(err.field).toBe(field);
    if (offset !== undefined) expect(err.offset).toBe(offset);
    expect(err.message).toMatch(/^[a-z'].*[^\n]$/);
    return err;
  }
  throw new Error(`expected a VmaFormatError on field ${field}`);
}

describe('encodeHeader / decodeHeader round trip', () => {
  test('decode(encode(h)) returns h plus header_size; encoding is deterministic', () => {
    const buf = encodeHeader(input);
    expect(buf.length % 512).toBe(0);
    expect(buf.length).toBeGreaterThan(K.HEADER_FIXED_SIZE);
    const h = decodeHeader(buf);
    expect(h).toEqual({ ...input, headerSize: buf.length });
    expect(encodeHeader(input).equals(buf)).toBe(true);
  });

  test('layout as the reference writer: blob offset 12288, blob size = bytes used, names then data', () => {
    const buf = encodeHeader(input);
    expect(buf.subarray(0, 4).toString('latin1')).toBe('VMA\0');
    expect(buf.readUInt32BE(K.OFF_VERSION)).toBe(1);
    expect(buf.readUInt32BE(K.OFF_BLOB_BUFFER_OFFSET)).toBe(12288);
    const blobSize = buf.readUInt32BE(K.OFF_BLOB_BUFFER_SIZE);
    const expectedBlobs =
      1 +
      input.configs.reduce((n, c) => n + 2 + Buffer.byteLength(c.name) + 1 + 2 + c.data.length, 0) +
      input.devices.reduce((n, d) => n + 2 + Buffer.byteLength(d.name) + 1, 0);
    expect(blobSize).toBe(expectedBlobs);
    expect(buf.readUInt32BE(K.OFF_HEADER_SIZE)).toBe(12288 + Math.ceil(expectedBlobs / 512) * 512);
    // first config name at blob offset 1, its data right after it
    expect(buf.readUInt32BE(K.OFF_CONFIG_NAMES)).toBe(1);
    expect(buf.readUInt32BE(K.OFF_CONFIG_DATA)).toBe(1 + 2 + 'qemu-server.conf'.length + 1);
    // u16 little-endian length prefix of the first blob
    expect(buf.readUInt16LE(12288 + 1)).toBe('qemu-server.conf'.length + 1);
    // dev_info slot index = dev_id; slot 3 and 4 stay empty
    expect(buf.readBigUInt64BE(K.OFF_DEV_INFO + 5 * 32 + 8)).toBe(512n);
    expect(buf.subarray(K.OFF_DEV_INFO + 3 * 32, K.OFF_DEV_INFO + 5 * 32).equals(Buffer.alloc(64))).toBe(true);
    expect(headerMd5(buf, buf.length).equals(buf.subarray(32, 48))).toBe(true);
  });

  test('diskless header with no configs', () => {
    const h = { uuid: UUID, ctime: 0, configs: [], devices: [] };
    const buf = encodeHeader(h);
    expect(decodeHeader(buf)).toEqual({ ...h, headerSize: 12800 });
  });

  test('negative ctime and a 256 TiB device survive', () => {
    const h = { uuid: UUID, ctime: -5, configs: [], devices: [{ id: 254, name: 'big', size: K.MAX_DEVICE_SIZE }] };
    expect(decodeHeader(encodeHeader(h))).toEqual({ ...h, headerSize: 12800 });
  });

  test('decode uses only header_size bytes of a longer buffer and keeps no view of it', () => {
    const buf = Buffer.concat([encodeHeader(input), Buffer.alloc(1000, 0xee)]);
    const h = decodeHeader(buf);
    buf.fill(0);
    expect(h.uuid.equals(UUID)).toBe(true);
    expect(h.configs[0].data.toString()).toContain('qmdump');
  });
});

describe('the real PVE sample header', () => {
  test('decodes to the documented values', () => {
    const h = decodeHeader(sample);
    expect(h.uuid.toString('hex')).toBe('04fc12eb0fed43229aaaf4e412f68096');
    expect(h.ctime).toBe(1635680622);
    expect(h.headerSize).toBe(12800);
    expect(h.configs.map((c) => [c.name, c.data.length])).toEqual([['qemu-server.conf', 417]]);
    expect(h.devices).toEqual([{ id: 1, name: 'drive-scsi0', size: 10737418240 }]);
    expect(sample.readUInt32BE(K.OFF_BLOB_BUFFER_SIZE)).toBe(453);
  });

  test('re-encoding it reproduces the PVE bytes exactly', () => {
    const h = decodeHeader(sample);
    expect(encodeHeader(h).equals(sample.subarray(0, 12800))).toBe(true);
  });
});

describe('header validation', () => {
  const good = encodeHeader(input);
  const edit = (f: (b: Buffer) => void, fixMd5 = true): Buffer => {
    const b = Buffer.from(good);
    f(b);
    return fixMd5 ? fixHeaderMd5(b) : b;
  };

  test('a bit flip anywhere in the header is rejected (magic, header_size or md5sum)', () => {
    const fields = new Set<string>();
    const wrong: string[] = [];
    for (let i = 0; i < good.length; i++) {
      const b = Buffer.from(good);
      b[i] ^= 1 << (i % 8);
      let err: unknown;
      try {
        decodeHeader(b);
      } catch (e) {
        err = e;
      }
      const field = err instanceof VmaFormatError ? err.field! : `no VmaFormatError (${String(err)})`;
      const expected = i < 4 ? ['magic'] : i >= K.OFF_HEADER_SIZE && i < K.OFF_HEADER_SIZE + 4 ? ['header_size', 'md5sum'] : ['md5sum'];
      if (!expected.includes(field)) wrong.push(`byte ${i}: ${field}`);
      fields.add(field);
    }
    expect(wrong).toEqual([]);
    expect([...fields].sort()).toEqual(['header_size', 'magic', 'md5sum']);
  });

  test('wrong magic, with a hint for compressed input', () => {
    expect(expectVmaError(() => decodeHeader(edit((b) => (b[3] = 1), false)), 'magic', 0).message).toMatch(/wrong magic/);
    const zstd = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), good.subarray(4)]);
    expect(expectVmaError(() => decodeHeader(zstd), 'magic').message).toMatch(/zstd-compressed/);
    const gz = Buffer.from([0x1f, 0x8b, 8, 0]);
    expect(expectVmaError(() => checkHeaderMagic(gz), 'magic').message).toMatch(/gzip-compressed/);
    expect(() => checkHeaderMagic(Buffer.from('VM'))).not.toThrow();
    expectVmaError(() => checkHeaderMagic(Buffer.from('VX')), 'magic');
  });

  test('header_size out of range or past the buffer', () => {
    expectVmaError(() => decodeHeader(edit((b) => b.writeUInt32BE(12288, K.OFF_HEADER_SIZE))), 'header_size', K.OFF_HEADER_SIZE);
    expectVmaError(() => decodeHeader(edit((b) => b.writeUInt32BE(0xffffffff, K.OFF_HEADER_SIZE), false)), 'header_size');
    expectVmaError(() => readHeaderSize(edit((b) => b.writeUInt32BE(K.MAX_HEADER_SIZE + 1, K.OFF_HEADER_SIZE), false)), 'header_size');
    expect(readHeaderSize(edit((b) => b.writeUInt32BE(K.MAX_HEADER_SIZE, K.OFF_HEADER_SIZE), false))).toBe(K.MAX_HEADER_SIZE);
    expectVmaError(() => decodeHeader(good.subarray(0, good.length - 1)), 'header_size');
    expectVmaError(() => decodeHeader(good.subarray(0, 30)), 'header_size');
  });

  test('MD5 is checked before the version; a valid MD5 with version 2 is a version error', () => {
    expectVmaError(() => decodeHeader(edit((b) => b.writeUInt32BE(2, K.OFF_VERSION), false)), 'md5sum', 32);
    const err = expectVmaError(() => decodeHeader(edit((b) => b.writeUInt32BE(2, K.OFF_VERSION))), 'version', 4);
    expect(err.message).toMatch(/version 2/);
  });

  test('the MD5 covers the padding after the blob buffer', () => {
    expectVmaError(() => decodeHeader(edit((b) => (b[good.length - 1] = 1), false)), 'md5sum');
  });

  test('blob buffer bounds', () => {
    expectVmaError(() => decodeHeader(edit((b) => b.writeUInt32BE(12287, K.OFF_BLOB_BUFFER_OFFSET))), 'blob_buffer_offset', 48);
    expectVmaError(() => decodeHeader(edit((b) => b.writeUInt32BE(good.length - 12288 + 1, K.OFF_BLOB_BUFFER_SIZE))), 'blob_buffer_size', 52);
    // the largest legal blob buffer (up to header_size) is fine
    expect(() => decodeHeader(edit((b) => b.writeUInt32BE(good.length - 12288, K.OFF_BLOB_BUFFER_SIZE)))).not.toThrow();
  });

  test('blob pointers must hit a blob start exactly', () => {
    const nameAt = K.OFF_CONFIG_NAMES;
    const dataAt = K.OFF_CONFIG_DATA;
    expectVmaError(() => decodeHeader(edit((b) => b.writeUInt32BE(b.readUInt32BE(nameAt) + 1, nameAt))), 'config_names', nameAt);
    expectVmaError(() => decodeHeader(edit((b) => b.writeUInt32BE(b.readUInt32BE(dataAt) + 2, dataAt))), 'config_data', dataAt);
    expectVmaError(() => decodeHeader(edit((b) => b.writeUInt32BE(100000, dataAt + 4))), 'config_data', dataAt + 4);
    const devPtr = K.OFF_DEV_INFO + 2 * 32;
    expectVmaError(() => decodeHeader(edit((b) => b.writeUInt32BE(b.readUInt32BE(devPtr) - 1, devPtr))), 'devname_ptr', devPtr);
  });

  test('half-set config slots are rejected', () => {
    expectVmaError(() => decodeHeader(edit((b) => b.writeUInt32BE(0, K.OFF_CONFIG_DATA + 4))), 'config_data');
    expectVmaError(() => decodeHeader(edit((b) => b.writeUInt32BE(0, K.OFF_CONFIG_NAMES + 4))), 'config_names');
  });

  test('names must be NUL-terminated strings without inner NUL', () => {
    // point the first config's name at its data blob, which has no terminator
    const dataPtr = good.readUInt32BE(K.OFF_CONFIG_DATA);
    const e1 = expectVmaError(() => decodeHeader(edit((b) => b.writeUInt32BE(dataPtr, K.OFF_CONFIG_NAMES))), 'config_names');
    expect(e1.message).toMatch(/NUL-terminated/);
    // replace a character of a device name by NUL
    const devPtr = good.readUInt32BE(K.OFF_DEV_INFO + 32);
    expectVmaError(() => decodeHeader(edit((b) => (b[12288 + devPtr + 2 + 3] = 0))), 'devname_ptr');
    // an empty config data blob is fine as data (shown by the round trip), but an empty name is a bare NUL
    const emptyName = encodeHeader({ uuid: UUID, ctime: 1, configs: [{ name: '', data: Buffer.from('x') }], devices: [] });
    expect(decodeHeader(emptyName).configs[0].name).toBe('');
  });

  test('device slots: dev_id 0 and 255 unused, name and size both set, size in range', () => {
    const slot = (id: number): number => K.OFF_DEV_INFO + id * 32;
    const ptr1 = good.readUInt32BE(slot(1));
    expectVmaError(() => decodeHeader(edit((b) => b.writeUInt32BE(ptr1, slot(0)))), 'dev_info', slot(0));
    expectVmaError(() => decodeHeader(edit((b) => b.writeBigUInt64BE(1n, slot(255) + 8))), 'dev_info', slot(255));
    expectVmaError(() => decodeHeader(edit((b) => b.writeBigUInt64BE(0n, slot(1) + 8))), 'size', slot(1) + 8);
    expectVmaError(() => decodeHeader(edit((b) => b.writeUInt32BE(0, slot(1)))), 'devname_ptr', slot(1));
    expectVmaError(() => decodeHeader(edit((b) => b.writeBigUInt64BE(2n ** 48n + 1n, slot(1) + 8))), 'size');
  });

  test('ctime beyond 2^53 is rejected', () => {
    expectVmaError(() => decodeHeader(edit((b) => b.writeBigInt64BE(2n ** 60n, K.OFF_CTIME))), 'ctime', K.OFF_CTIME);
  });

  test('a blob whose length runs past the blob buffer cannot be pointed at', () => {
    // shrink blob_buffer_size so the last device name blob no longer fits
    const size = good.readUInt32BE(K.OFF_BLOB_BUFFER_SIZE);
    expectVmaError(() => decodeHeader(edit((b) => b.writeUInt32BE(size - 1, K.OFF_BLOB_BUFFER_SIZE))), 'devname_ptr');
  });
});

describe('encodeHeader rejects what the format cannot hold', () => {
  const base: VmaHeaderInput = { uuid: UUID, ctime: 1, configs: [], devices: [] };
  test.each([
    ['uuid length', { ...base, uuid: Buffer.alloc(15) }, 'uuid'],
    ['fractional ctime', { ...base, ctime: 1.5 }, 'ctime'],
    ['257 configs', { ...base, configs: Array.from({ length: 257 }, (_, i) => ({ name: `c${i}`, data: Buffer.alloc(1) })) }, 'config_names'],
    ['config larger than 65535 bytes', { ...base, configs: [{ name: 'big', data: Buffer.alloc(65536) }] }, 'config_data'],
    ['NUL in a config name', { ...base, configs: [{ name: 'a\0b', data: Buffer.alloc(1) }] }, 'config_names'],
    ['NUL in a device name', { ...base, devices: [{ id: 1, name: 'a\0', size: 512 }] }, 'devname_ptr'],
    ['dev_id 0', { ...base, devices: [{ id: 0, name: 'a', size: 512 }] }, 'dev_info'],
    ['dev_id 255', { ...base, devices: [{ id: 255, name: 'a', size: 512 }] }, 'dev_info'],
    ['duplicate dev_id', { ...base, devices: [{ id: 1, name: 'a', size: 512 }, { id: 1, name: 'b', size: 512 }] }, 'dev_info'],
    ['size 0', { ...base, devices: [{ id: 1, name: 'a', size: 0 }] }, 'size'],
    ['size > 256 TiB', { ...base, devices: [{ id: 1, name: 'a', size: K.MAX_DEVICE_SIZE + 512 }] }, 'size'],
    ['header over 512 KiB', { ...base, configs: Array.from({ length: 9 }, (_, i) => ({ name: `c${i}`, data: Buffer.alloc(65000) })) }, 'header_size'],
  ])('%s', (_name, h, field) => {
    expectVmaError(() => encodeHeader(h as VmaHeaderInput), field as string);
  });
});
