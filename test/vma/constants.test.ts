import * as K from '../../src/vma/constants';

describe('VMA constants (vma-format.md §1-§3)', () => {
  test('sizes and limits', () => {
    expect(K.MAX_EXTENT_SIZE).toBe(3867136);
    expect(K.BLOCKS_PER_CLUSTER).toBe(16);
    expect(K.CLUSTERS_PER_EXTENT * K.BLOCKINFO_SIZE + K.OFF_EXT_BLOCKINFO).toBe(K.EXTENT_HEADER_SIZE);
    expect(K.MAX_DEVICE_SIZE).toBe(2 ** 48);
    expect(K.VMA_MAGIC.readUInt32BE(0)).toBe(0x564d4100);
    expect(K.VMA_EXTENT_MAGIC.readUInt32BE(0)).toBe(0x564d4145);
  });

  test('the fixed header layout adds up to 12288 bytes (the offsets the reference writer asserts)', () => {
    expect(K.OFF_RESERVED + 1984).toBe(K.OFF_CONFIG_NAMES);
    expect(K.OFF_CONFIG_NAMES).toBe(2044);
    expect(K.OFF_CONFIG_NAMES + 4 * K.MAX_CONFIGS).toBe(K.OFF_CONFIG_DATA);
    expect(K.OFF_CONFIG_DATA).toBe(3068);
    expect(K.OFF_CONFIG_DATA + 4 * K.MAX_CONFIGS).toBe(K.OFF_RESERVED1);
    expect(K.OFF_DEV_INFO).toBe(4096);
    expect(K.OFF_DEV_INFO + K.DEV_INFO_SLOTS * K.DEV_INFO_SIZE).toBe(K.HEADER_FIXED_SIZE);
    expect(K.OFF_HEADER_SIZE + 4).toBe(K.HEADER_PREFIX_SIZE);
  });
});
