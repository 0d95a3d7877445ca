/**
 * Streaming VMA writer: turns configs, a device list and a stream of 64 KiB clusters into the bytes
 * of a standard VMA archive, as QEMU's vma-writer does (vma-format.md §3.3-§3.6, §4, §8.4).
 *
 * Owns extent packing and the writer-side rules: dev_ids 1..n in the order of `devices`; one
 * blockinfo for every cluster, all-zero ones included (mask 0); all-zero 4 KiB blocks left out;
 * a block straddling the device end stored whole with the bytes past the end zeroed, blocks
 * starting past the end never stored; at most 58 clusters per extent (QEMU flushes at 58);
 * header_size a multiple of 512; a diskless archive is the header plus one empty extent; nothing
 * after the last extent. Header encoding is header.ts's, extent headers extent.ts's.
 *
 * Guarantees: yields the header first, then each extent as one Buffer as soon as it is full, so
 * memory is bounded by one extent (3.8 MB) however large the devices are; input cluster buffers
 * are copied, never kept, so the caller may reuse them once the next cluster is requested. Fails
 * with VmaFormatError (offset = output position, field = dev_id, cluster_num or data) when a
 * cluster names an unknown device, lies past the device end, comes twice or has the wrong length,
 * and at the end when any cluster of any device was never given (checked before the last extent
 * is yielded). The output is deterministic for given uuid, ctime and cluster order.
 */
import { VmaFormatError } from '../errors';
import { ClusterSet } from './clusters';
import {
  BLOCK_SIZE,
  BLOCKS_PER_CLUSTER,
  CLUSTER_SIZE,
  EXTENT_HEADER_SIZE,
  MAX_DEV_ID,
  WRITER_CLUSTERS_PER_EXTENT,
  ZERO_BLOCK,
  ZERO_CLUSTER,
} from './constants';
import { encodeExtentHeader, extentByteSize, type BlockInfo } from './extent';
import { encodeHeader } from './header';
import { clusterCount } from './names';
import type { VmaClusterData, VmaConfig } from './types';

export interface WriteVmaOptions {
  /** 16 raw bytes, repeated in every extent */
  uuid: Buffer;
  /** Unix seconds stored in the header */
  ctime: number;
  configs: VmaConfig[];
  /** dev_ids are 1..n in this order */
  devices: { name: string; size: number }[];
}

const SCRATCH_SIZE = EXTENT_HEADER_SIZE + WRITER_CLUSTERS_PER_EXTENT * CLUSTER_SIZE;

interface DeviceState {
  name: string;
  size: number;
  clusters: number;
  seen: ClusterSet;
}

/**
 * Writes a VMA archive. Yields the header, then the extents. See the module comment.
 */
export async function* writeVma(
  opts: WriteVmaOptions,
  clusters: AsyncIterable<VmaClusterData> | Iterable<VmaClusterData>,
): AsyncGenerator<Buffer> {
  if (opts.devices.length > MAX_DEV_ID) {
    throw new VmaFormatError(`${opts.devices.length} devices exceed the VMA limit of ${MAX_DEV_ID}`, 0, 'dev_info');
  }
  const header = encodeHeader({
    uuid: opts.uuid,
    ctime: opts.ctime,
    configs: opts.configs,
    devices: opts.devices.map((d, i) => ({ id: i + 1, name: d.name, size: d.size })),
  });
  const devices: DeviceState[] = opts.devices.map((d) => ({
    name: d.name,
    size: d.size,
    clusters: clusterCount(d.size),
    seen: new ClusterSet(clusterCount(d.size)),
  }));
  let pos = header.length;
  yield header;

  let scratch: Buffer | undefined;
  let entries: BlockInfo[] = [];
  let blocks = 0;

  /** Finishes the pending extent and returns its bytes; resets the pending state. */
  const flush = (): Buffer => {
    const buf = scratch ?? Buffer.allocUnsafe(EXTENT_HEADER_SIZE);
    encodeExtentHeader({ uuid: opts.uuid, blockCount: blocks, entries }).copy(buf, 0);
    const used = extentByteSize(blocks);
    let out: Buffer;
    if (scratch !== undefined && used * 2 >= scratch.length) {
      out = buf.subarray(0, used); // hand the scratch buffer over; allocate a new one next time
      scratch = undefined;
    } else {
      out = Buffer.allocUnsafe(used); // mostly sparse: copy out, keep the scratch buffer
      buf.copy(out, 0, 0, used);
    }
    pos += used;
    entries = [];
    blocks = 0;
    return out;
  };

  let extents = 0;
  for await (const c of clusters) {
    const fail: (message: string, field: string) => never = (message, field) => {
      throw new VmaFormatError(message, pos, field);
    };
    const dev = Number.isInteger(c.devId) ? devices[c.devId - 1] : undefined;
    if (dev === undefined) fail(`cluster ${c.cluster} for unknown dev_id ${c.devId} (1..${devices.length})`, 'dev_id');
    if (!Number.isInteger(c.cluster) || c.cluster < 0 || c.cluster >= dev.clusters) {
      fail(`cluster ${c.cluster} beyond the end of device '${dev.name}' (${dev.clusters} clusters)`, 'cluster_num');
    }
    const start = c.cluster * CLUSTER_SIZE;
    const devBytes = Math.min(CLUSTER_SIZE, dev.size - start);
    const data = c.data;
    if (data.length < devBytes || data.length > CLUSTER_SIZE) {
      fail(
        `cluster ${c.cluster} of device '${dev.name}' has ${data.length} bytes, expected ${devBytes === CLUSTER_SIZE ? CLUSTER_SIZE : `${devBytes}..${CLUSTER_SIZE}`}`,
        'data',
      );
    }
    if (!dev.seen.add(c.cluster)) fail(`cluster ${c.cluster} of device '${dev.name}' given twice`, 'cluster_num');

    let mask = 0;
    // the shared zero cluster itself (restore's chunks known to be zero) needs no comparing
    if (!(devBytes === CLUSTER_SIZE && (data === ZERO_CLUSTER || data.equals(ZERO_CLUSTER)))) {
      if (scratch === undefined) scratch = Buffer.allocUnsafe(SCRATCH_SIZE);
      for (let j = 0; j < BLOCKS_PER_CLUSTER; j++) {
        const bStart = j * BLOCK_SIZE;
        const n = Math.min(BLOCK_SIZE, devBytes - bStart);
        if (n <= 0) break; // blocks starting at or past the device end are never stored
        const block = data.subarray(bStart, bStart + n);
        if (block.equals(n === BLOCK_SIZE ? ZERO_BLOCK : ZERO_BLOCK.subarray(0, n))) continue;
        const dst = extentByteSize(blocks);
        block.copy(scratch, dst);
        if (n < BLOCK_SIZE) scratch.fill(0, dst + n, dst + BLOCK_SIZE);
        mask |= 1 << j;
        blocks++;
      }
    }
    entries.push({ mask, reserved: 0, devId: c.devId, cluster: c.cluster });
    if (entries.length === WRITER_CLUSTERS_PER_EXTENT) {
      extents++;
      yield flush();
    }
  }

  for (const dev of devices) {
    const missing = dev.seen.firstMissing();
    if (missing >= 0) {
      throw new VmaFormatError(
        `missing cluster ${missing} of device '${dev.name}' (${dev.clusters - dev.seen.count} of ${dev.clusters} clusters never given)`,
        pos,
        'cluster_num',
      );
    }
  }
  if (entries.length > 0 || extents === 0) yield flush();
}

