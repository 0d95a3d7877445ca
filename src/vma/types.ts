/**
 * The records the VMA codec exchanges with the rest of vzdump-zfs (vma-format.md §2, §3).
 * Plain data only: the reader yields these, the writer consumes them.
 */

/** A config blob stored in the VMA header (`qemu-server.conf`, `qemu-server.fw`). */
export interface VmaConfig {
  name: string;
  data: Buffer;
}

/** A disk stream declared in the VMA header. `size` is in bytes (< 2^48, so exact as a number). */
export interface VmaDevice {
  /** dev_id, 1..254 */
  id: number;
  /** e.g. `drive-scsi0` */
  name: string;
  size: number;
}

/** What the VMA header says, once parsed and validated. */
export interface VmaHeader {
  /** 16 raw bytes */
  uuid: Buffer;
  /** Unix seconds when the archive header was written */
  ctime: number;
  configs: VmaConfig[];
  /** in dev_id order */
  devices: VmaDevice[];
  /** bytes of the header on the wire (header_size) */
  headerSize: number;
}

/**
 * One 64 KiB cluster of one device, as stored in an extent.
 * `blocks` holds only the 4 KiB blocks whose bit is set in `mask` (bit j = block j of the
 * cluster, LSB first), concatenated in order; a cleared bit means the block is all zeros.
 * `blocks.length === popcount(mask) * 4096`. Once yielded, the buffer is the consumer's, except
 * from a reader in transient mode, where it is valid only until the next record is asked for.
 */
export interface VmaCluster {
  devId: number;
  cluster: number;
  mask: number;
  blocks: Buffer;
}

/** Records yielded by the streaming reader: one header, then clusters in archive order. */
export type VmaRecord = { type: 'header'; header: VmaHeader } | ({ type: 'cluster' } & VmaCluster);

/** Input to the streaming writer for one cluster: up to 65536 bytes of device data at `cluster * 65536`. */
export interface VmaClusterData {
  devId: number;
  cluster: number;
  /** 65536 bytes, or fewer for the device's last partial cluster (the writer pads with zeros) */
  data: Buffer;
}
