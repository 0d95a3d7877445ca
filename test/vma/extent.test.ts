import { VmaFormatError } from '../../src/errors';
import * as K from '../../src/vma/constants';
import {
  blocksAnnounced,
  decodeExtentHeader,
  encodeExtentHeader,
  extentByteSize,
  extentHeaderMd5,
  popcount16,
  type BlockInfo,
} from '../../src/vma/extent';
import { bi, popcount, UUID } from './helpers/vma-gen';

const OFFSET = 3867648;

function decodeError(buf: Buffer, uuid = UUID): VmaFormatError {
  try {
    decodeExtentHeader(buf, uuid, OFFSET);
  } catch (e) {
    expect(e).toBeInstanceOf(VmaFormatError);
    const err = e as VmaFormatError;
    expect(err.offset).toBe(OFFSET);
    expect(err.message.startsWith(`extent at offset ${OFFSET}: `)).toBe(true);
    return err;
  }
  throw new Error('expected a VmaFormatError');
}

const entries: BlockInfo[] = [bi(1, 0, 0xffff), bi(0, 99, 0xffff, 3), bi(2, 7, 0x1000, 0xab), bi(1, 2 ** 32 - 1, 0)];

describe('popcount16', () => {
  test('matches a naive count for every 16-bit mask', () => {
    const wrong: number[] = [];
    for (let m = 0; m <= 0xffff; m++) if (popcount16(m) !== popcount(m)) wrong.push(m);
    expect(wrong).toEqual([]);
  });
});

describe('encodeExtentHeader / decodeExtentHeader', () => {
  test('round trip keeps every slot, empty ones and the reserved byte included', () => {
    const blockCount = blocksAnnounced(entries);
    expect(blockCount).toBe(17); // the empty slot's mask counts nothing
    const buf = encodeExtentHeader({ uuid: UUID, blockCount, entries });
    expect(buf.length).toBe(512);
    const h = decodeExtentHeader(buf, UUID, OFFSET);
    expect(h.blockCount).toBe(17);
    expect(h.uuid.equals(UUID)).toBe(true);
    expect(h.entries.length).toBe(59);
    expect(h.entries.slice(0, 4)).toEqual(entries);
    expect(h.entries.slice(4).every((e) => e.devId === 0 && e.mask === 0 && e.cluster === 0)).toBe(true);
    expect(encodeExtentHeader(h).equals(buf)).toBe(true);
  });

  test('byte layout of a blockinfo: mask BE, reserved, dev_id, cluster BE (§3.2)', () => {
    const buf = encodeExtentHeader({ uuid: UUID, blockCount: 1, entries: [bi(0x12, 0x01020304, 0xa5c3, 0x77)] });
    expect(buf.subarray(0, 4).toString('latin1')).toBe('VMAE');
    expect(buf.readUInt16BE(4)).toBe(0);
    expect(buf.readUInt16BE(6)).toBe(1);
    expect(buf.subarray(40, 48)).toEqual(Buffer.from([0xa5, 0xc3, 0x77, 0x12, 0x01, 0x02, 0x03, 0x04]));
    expect(extentHeaderMd5(buf).equals(buf.subarray(24, 40))).toBe(true);
  });

  test('59 entries fit, 60 do not', () => {
    const full = Array.from({ length: 59 }, (_, i) => bi(1, i, 0));
    expect(decodeExtentHeader(encodeExtentHeader({ uuid: UUID, blockCount: 0, entries: full }), UUID, 0).entries.every((e, i) => e.cluster === i)).toBe(true);
    expect(() => encodeExtentHeader({ uuid: UUID, blockCount: 0, entries: [...full, bi(1, 59, 0)] })).toThrow(RangeError);
  });

  test('extentByteSize', () => {
    expect(extentByteSize(0)).toBe(512);
    expect(extentByteSize(944)).toBe(K.MAX_EXTENT_SIZE);
  });

  test('decode keeps no view of its input', () => {
    const buf = encodeExtentHeader({ uuid: UUID, blockCount: 16, entries: [bi(1, 0, 0xffff)] });
    const h = decodeExtentHeader(buf, UUID, 0);
    buf.fill(0);
    expect(h.uuid.equals(UUID)).toBe(true);
  });
});

describe('extent header validation', () => {
  const good = encodeExtentHeader({ uuid: UUID, blockCount: 17, entries });

  test('a bit flip in each byte is reported against the field it hit (or the MD5 that covers it)', () => {
    const wrong: string[] = [];
    for (let i = 0; i < 512; i++) {
      for (const bit of [0, 7]) {
        const b = Buffer.from(good);
        b[i] ^= 1 << bit;
        let field: string;
        try {
          decodeExtentHeader(b, UUID, OFFSET);
          field = 'accepted';
        } catch (e) {
          field = e instanceof VmaFormatError ? e.field! : `non-VmaFormatError ${String(e)}`;
        }
        const expected = i < 4 ? 'magic' : i < 6 ? 'reserved1' : i < 8 ? 'md5sum' : i < 24 ? 'uuid' : 'md5sum';
        if (field !== expected) wrong.push(`byte ${i} bit ${bit}: ${field}, expected ${expected}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  test('messages name the problem', () => {
    const b = Buffer.from(good);
    b.write('VMAX', 0, 'latin1');
    expect(decodeError(b).message).toMatch(/wrong magic/);
    const r = Buffer.from(good);
    r.writeUInt16BE(1, 4);
    expect(decodeError(r).message).toMatch(/reserved1 is 1/);
    expect(decodeError(good, Buffer.alloc(16)).message).toMatch(/uuid differs/);
    const m = Buffer.from(good);
    m[100] ^= 1;
    expect(decodeError(m).message).toBe(`extent at offset ${OFFSET}: MD5 mismatch (extent header corrupted)`);
  });

  test('block_count must equal the blocks the masks announce (valid MD5)', () => {
    for (const blockCount of [16, 18, 0, 944]) {
      const e = decodeError(encodeExtentHeader({ uuid: UUID, blockCount, entries }));
      expect(e.field).toBe('block_count');
      expect(e.message).toMatch(new RegExp(`block_count ${blockCount} but the cluster masks announce 17 blocks`));
    }
  });

  test('dev_id 0 slots consume nothing whatever their mask says', () => {
    const es = [bi(0, 0, 0xffff), bi(0, 5, 0x0001), bi(3, 1, 0x0003)];
    expect(decodeExtentHeader(encodeExtentHeader({ uuid: UUID, blockCount: 2, entries: es }), UUID, 0).blockCount).toBe(2);
    expect(decodeError(encodeExtentHeader({ uuid: UUID, blockCount: 19, entries: es })).field).toBe('block_count');
  });

  test('a short buffer and an all-zero block are rejected', () => {
    expect(decodeError(good.subarray(0, 511)).field).toBe('magic');
    expect(decodeError(Buffer.alloc(512)).field).toBe('magic');
  });
});
