/**
 * Every fixed number of the VMA format, named, with the section of docs/vma-format.md
 * (vma-format.md in the project notes) it comes from.
 *
 * Owns: magic values, sizes, limits and byte offsets of the VMA header (§2), the device info
 * entry (§2), the blob buffer (§2.1), the extent header (§3.1) and the blockinfo word (§3.2).
 * Leaves all logic to header.ts, blobs.ts, extent.ts, reader.ts and writer.ts.
 */

// ---- §1 General ---------------------------------------------------------------------------

/** `"VMA\0"` (H `VMA_MAGIC`, 0x564D4100). */
export const VMA_MAGIC = Buffer.from([0x56, 0x4d, 0x41, 0x00]);
/** `"VMAE"` (H `VMA_EXTENT_MAGIC`, 0x564D4145). */
export const VMA_EXTENT_MAGIC = Buffer.from([0x56, 0x4d, 0x41, 0x45]);
/** The only format version (§1). */
export const VMA_VERSION = 1;

/** 4 KiB data block (H `VMA_BLOCK_BITS 12`). */
export const BLOCK_SIZE = 4096;
/** 64 KiB cluster (H `VMA_CLUSTER_SIZE`). */
export const CLUSTER_SIZE = 65536;
/** 16 blocks per cluster; one mask bit each. */
export const BLOCKS_PER_CLUSTER = CLUSTER_SIZE / BLOCK_SIZE;
/** Mask value meaning "all 16 blocks stored". */
export const FULL_MASK = 0xffff;
/** shared all-zero buffers, for comparisons only: never write into them */
export const ZERO_CLUSTER = Buffer.alloc(CLUSTER_SIZE);
export const ZERO_BLOCK = ZERO_CLUSTER.subarray(0, BLOCK_SIZE);

// ---- §2 VMA header --------------------------------------------------------------------------

/** `sizeof(VmaHeader)`: the fixed part before the blob buffer. */
export const HEADER_FIXED_SIZE = 12288;
/**
 * Largest header_size the reader accepts. The writer caps the whole header at 8 x 64 KiB
 * (WR `HEADERBUF_SIZE`, §2.1); we allow that much blob space on top of the fixed part, which is
 * more than any real writer produces, and it bounds the memory a hostile header can claim.
 */
export const MAX_HEADER_SIZE = HEADER_FIXED_SIZE + 8 * 65536;
/** The reference writer's cap on the whole header (WR `HEADERBUF_SIZE`); our writer keeps to it. */
export const WRITER_MAX_HEADER_SIZE = 8 * 65536;
/** header_size written by our writer is rounded up to this (O_DIRECT in QEMU, §2 and §8.10). */
export const HEADER_ALIGN = 512;

export const OFF_MAGIC = 0; // 4 bytes
export const OFF_VERSION = 4; // u32 BE
export const OFF_UUID = 8; // 16 bytes
export const UUID_SIZE = 16;
export const OFF_CTIME = 24; // i64 BE
export const OFF_MD5 = 32; // 16 bytes
export const MD5_SIZE = 16;
export const OFF_BLOB_BUFFER_OFFSET = 48; // u32 BE
export const OFF_BLOB_BUFFER_SIZE = 52; // u32 BE
export const OFF_HEADER_SIZE = 56; // u32 BE
/** Bytes needed to read magic, version and the three sizes above. */
export const HEADER_PREFIX_SIZE = 60;
export const OFF_RESERVED = 60; // 1984 bytes
export const OFF_CONFIG_NAMES = 2044; // u32 BE x 256, blob offsets
export const OFF_CONFIG_DATA = 3068; // u32 BE x 256, blob offsets
export const OFF_RESERVED1 = 4092; // 4 bytes
export const OFF_DEV_INFO = 4096; // 32 bytes x 256, index = dev_id
/** Config slots (H `VMA_MAX_CONFIGS`). */
export const MAX_CONFIGS = 256;
/** dev_info slots in the header; index 0 is never used. */
export const DEV_INFO_SLOTS = 256;
/** Highest usable dev_id: the reference tools only loop to 254 and the writer stops there (§2.2). */
export const MAX_DEV_ID = 254;

/** `VmaDeviceInfoHeader` (§2). */
export const DEV_INFO_SIZE = 32;
export const OFF_DEV_NAME_PTR = 0; // u32 BE blob offset
export const OFF_DEV_SIZE = 8; // u64 BE

/** Largest representable device: 2^32 clusters of 64 KiB = 256 TiB (§3.5). */
export const MAX_DEVICE_SIZE = 2 ** 32 * CLUSTER_SIZE;

// ---- §2.1 Blob buffer -----------------------------------------------------------------------

/** Blob offset 0 means "none"; the first blob starts at 1. */
export const FIRST_BLOB_OFFSET = 1;
/** u16 LE length prefix. */
export const BLOB_LENGTH_SIZE = 2;
/** Largest blob (u16 length). */
export const MAX_BLOB_SIZE = 65535;

// ---- §3.1 Extent header ---------------------------------------------------------------------

export const EXTENT_HEADER_SIZE = 512;
export const OFF_EXT_MAGIC = 0; // 4 bytes
export const OFF_EXT_RESERVED1 = 4; // u16 BE, must be 0
export const OFF_EXT_BLOCK_COUNT = 6; // u16 BE
export const OFF_EXT_UUID = 8; // 16 bytes
export const OFF_EXT_MD5 = 24; // 16 bytes
export const OFF_EXT_BLOCKINFO = 40; // u64 BE x 59
export const BLOCKINFO_SIZE = 8;
/** Cluster slots per extent (H `VMA_BLOCKS_PER_EXTENT`). */
export const CLUSTERS_PER_EXTENT = 59;
/** The writer flushes at 58 clusters, like QEMU's `vma_writer_get_buffer` (§3.6). */
export const WRITER_CLUSTERS_PER_EXTENT = CLUSTERS_PER_EXTENT - 1;
/** 512 + 59 * 65536 = 3,867,136 (H `VMA_MAX_EXTENT_SIZE`). */
export const MAX_EXTENT_SIZE = EXTENT_HEADER_SIZE + CLUSTERS_PER_EXTENT * CLUSTER_SIZE;

// ---- §3.2 blockinfo (u64 BE): [0..1] mask BE, [2] reserved, [3] dev_id, [4..7] cluster_num BE

export const OFF_BI_MASK = 0; // u16 BE
export const OFF_BI_RESERVED = 2; // u8, ignored by the reader
export const OFF_BI_DEV_ID = 3; // u8, 0 = empty slot
export const OFF_BI_CLUSTER = 4; // u32 BE
