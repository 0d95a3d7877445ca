/**
 * Streaming VMA reader: turns an uncompressed VMA byte stream into a header record followed by one
 * record per cluster, in archive order (vma-format.md §2-§5, §8).
 *
 * Owns stream framing and every check that needs the device table: known dev_id, cluster number
 * inside the device, no stored block starting at or past the device end (but a full mask, which
 * vma-reader.c accepts and clips, as this reader does), no duplicate cluster,
 * and (with `checkComplete`, the default) that every cluster of every device appeared exactly
 * once by EOF, which is stricter than the reference `vma verify`. Header and extent-header
 * checks live in header.ts and extent.ts. Leaves decompression, file I/O and reordering to the
 * caller: clusters arrive in any order and interleaved across devices (§3.6).
 *
 * Guarantees: never seeks; buffers only what the next step needs (the header, then a 512-byte
 * extent header, then that extent's data, at most 3.87 MB; in transient mode also the chunks and
 * assembly buffers of the previous extent, until the next one starts); pulls no input until the consumer asks
 * for the next record; validates a whole extent header before yielding any of its clusters, and
 * the extent's data is complete before its first cluster is yielded. Every format problem is a
 * VmaFormatError whose `offset` is where the broken structure starts (the header field, or the
 * extent's first byte, or the end of the stream) and whose `field` is one of: magic, version,
 * header_size, md5sum, ctime, blob_buffer_offset, blob_buffer_size, config_names, config_data,
 * dev_info, devname_ptr, size (header); magic, reserved1, uuid, md5sum, block_count, dev_id,
 * cluster_num, mask, data, extent (extents); cluster_num (completeness at EOF). Errors raised by
 * the input iterable itself (e.g. a failing decompressor) pass through unchanged, and the input
 * iterator is closed (`return()`) whenever the reader stops early.
 *
 * Does not guarantee data integrity: VMA has no data checksum (§1, §8.7). A device named
 * `vmstate` is read as an ordinary device (its clusters are not required to be in order); the
 * callers decide what to do with it.
 *
 * Lifetime of cluster `blocks`: by default they are views of input chunks or of a buffer allocated
 * for that one cluster, so they stay valid after later records (this relies on the input not
 * reusing a chunk after yielding it, true for Node streams). In transient mode (`transient: true`)
 * they are valid only until the consumer asks for the next record: the reader then assembles
 * clusters that span input chunks in buffers it reuses for the next extent, and hands every input
 * chunk it has consumed back through `release` once the consumer has moved past the last cluster
 * that viewed it (at the start of the next extent), so a pooled source can reuse it.
 */
import { VmaFormatError } from '../errors';
import { ClusterSet } from './clusters';
import {
  BLOCK_SIZE,
  BLOCKS_PER_CLUSTER,
  CLUSTER_SIZE,
  EXTENT_HEADER_SIZE,
  FULL_MASK,
  HEADER_PREFIX_SIZE,
} from './constants';
import { decodeExtentHeader, extentByteSize, popcount16 } from './extent';
import { checkHeaderMagic, decodeHeader, readHeaderSize } from './header';
import { clusterCount } from './names';
import type { VmaCluster, VmaDevice, VmaRecord } from './types';

export interface ReadVmaOptions {
  /** file name used in error messages, e.g. "'vzdump-qemu-101-....vma.zst'" */
  label?: string;
  /** default true: at EOF every cluster of every device must have appeared exactly once */
  checkComplete?: boolean;
  /**
   * The consumer keeps no cluster's `blocks` once it asks for the next record (copying what it
   * keeps), so the reader may reuse its buffers and release input chunks. Default false.
   */
  transient?: boolean;
  /** transient mode only: called with each input chunk (or a view of it) the reader no longer refers to */
  release?: (chunk: Buffer) => void;
}

const EMPTY = Buffer.alloc(0);

/** A FIFO of input chunks that hands out exactly n bytes, copying only when n spans chunks. */
class ByteQueue {
  /** chunks[head..] are live; the consumed prefix is dropped in batches (no O(n) shift per chunk) */
  private chunks: Buffer[] = [];
  private head = 0;
  private headOff = 0;
  length = 0;

  /** `consumed`: called with each chunk whose last byte has been taken */
  constructor(private readonly consumed?: (chunk: Buffer) => void) {}

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.length += b.length;
  }

  /** Puts back a piece taken with shiftChunk (it becomes the first chunk again). */
  pushFront(b: Buffer): void {
    if (b.length === 0) return;
    if (this.head > 0) this.chunks[--this.head] = b;
    else this.chunks.unshift(b);
    this.headOff = 0;
    this.length += b.length;
  }

  /** `taken`: the head chunk's bytes were all taken (not handed out whole by shiftChunk) */
  private dropHead(taken: boolean): void {
    if (taken) this.consumed?.(this.chunks[this.head]);
    // release the consumed chunk now, not when the batch is compacted
    this.chunks[this.head] = EMPTY;
    this.head++;
    this.headOff = 0;
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head >= 1024) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }

  /** Removes and returns the next n bytes (n <= length): a view when they lie in one chunk. */
  take(n: number): Buffer {
    if (n === 0) return EMPTY;
    const first = this.chunks[this.head];
    if (first.length - this.headOff >= n) {
      const out = first.subarray(this.headOff, this.headOff + n);
      this.headOff += n;
      if (this.headOff === first.length) this.dropHead(true);
      this.length -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[this.head];
      const k = Math.min(c.length - this.headOff, n - filled);
      c.copy(out, filled, this.headOff, this.headOff + k);
      filled += k;
      this.headOff += k;
      if (this.headOff === c.length) this.dropHead(true);
    }
    this.length -= n;
    return out;
  }

  /** Removes and returns the rest of the first chunk (a view), or undefined when empty. */
  shiftChunk(): Buffer | undefined {
    if (this.length === 0) return undefined;
    const c = this.chunks[this.head];
    const out = this.headOff === 0 ? c : c.subarray(this.headOff);
    this.length -= out.length;
    this.dropHead(false);
    return out;
  }

  /** A copy of the next n bytes (n <= length) without consuming them. */
  peek(n: number): Buffer {
    const out = Buffer.alloc(n);
    let filled = 0;
    let off = this.headOff;
    for (let i = this.head; i < this.chunks.length && filled < n; i++) {
      const c = this.chunks[i];
      const k = Math.min(c.length - off, n - filled);
      c.copy(out, filled, off, off + k);
      filled += k;
      off = 0;
    }
    return out;
  }
}

interface DeviceState {
  dev: VmaDevice;
  clusters: number;
  seen: ClusterSet;
}

function toBuffer(chunk: Buffer | Uint8Array): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError(`internal error: readVma input must yield Buffers, got ${typeof chunk}`);
}

/** Mask of the blocks of `cluster` that start before the device end. */
function allowedMask(size: number, cluster: number): number {
  const rest = size - cluster * CLUSTER_SIZE;
  if (rest >= CLUSTER_SIZE) return FULL_MASK;
  const blocks = Math.ceil(rest / BLOCK_SIZE);
  return (1 << blocks) - 1;
}

/**
 * Reads a VMA stream (any async or sync iterable of chunks, e.g. a Readable): yields `{ type: 'header', header }`, then one `{ type: 'cluster', ... }`
 * per blockinfo slot in use, in archive order. See the module comment for the guarantees.
 */
export async function* readVma(
  input: AsyncIterable<Buffer | Uint8Array> | Iterable<Buffer | Uint8Array>,
  opts: ReadVmaOptions = {},
): AsyncGenerator<VmaRecord> {
  const prefix = opts.label ? `${opts.label}: ` : '';
  const checkComplete = opts.checkComplete ?? true;
  const transient = opts.transient ?? false;
  if (opts.release && !transient) throw new TypeError('internal error: readVma: release needs transient mode');
  /** input chunks consumed whole; released when the consumer is past every cluster that viewed them */
  const retired: Buffer[] = [];
  const retire = opts.release ? (chunk: Buffer) => retired.push(chunk) : undefined;
  /** transient mode: buffers for clusters that span input chunks, reused extent after extent */
  const assembly: Buffer[] = [];
  const fail: (message: string, offset: number, field: string) => never = (message, offset, field) => {
    throw new VmaFormatError(prefix + message, offset, field);
  };
  const relabel = <T>(f: () => T): T => {
    try {
      return f();
    } catch (e) {
      if (prefix && e instanceof VmaFormatError) throw new VmaFormatError(prefix + e.message, e.offset, e.field);
      throw e;
    }
  };

  const it: AsyncIterator<Buffer | Uint8Array> | Iterator<Buffer | Uint8Array> =
    Symbol.asyncIterator in input ? input[Symbol.asyncIterator]() : input[Symbol.iterator]();
  const q = new ByteQueue(retire);
  let ended = false;
  /** Pulls input until n bytes are buffered or the input ends; true if n bytes are there. */
  const fill = async (n: number): Promise<boolean> => {
    while (q.length < n && !ended) {
      const r = await it.next();
      if (r.done) ended = true;
      else q.push(toBuffer(r.value));
    }
    return q.length >= n;
  };

  try {
    // ---- header (§2) ----
    if (!(await fill(HEADER_PREFIX_SIZE))) {
      relabel(() => checkHeaderMagic(q.peek(q.length)));
      fail(`vma header truncated: stream ends after ${q.length} bytes`, q.length, 'header_size');
    }
    const headerSize = relabel(() => readHeaderSize(q.peek(HEADER_PREFIX_SIZE)));
    if (!(await fill(headerSize))) {
      fail(`vma header truncated: stream ends after ${q.length} of ${headerSize} bytes`, q.length, 'header_size');
    }
    const header = relabel(() => decodeHeader(q.take(headerSize)));
    let pos = headerSize;
    const devices: (DeviceState | undefined)[] = [];
    for (const dev of header.devices) {
      const clusters = clusterCount(dev.size);
      devices[dev.id] = { dev, clusters, seen: new ClusterSet(clusters) };
    }
    yield { type: 'header', header };

    // ---- extents (§3) ----
    for (;;) {
      // the consumer has asked for the record after the previous extent's last cluster
      if (retired.length > 0) {
        for (const c of retired) opts.release!(c);
        retired.length = 0;
      }
      if (!(await fill(EXTENT_HEADER_SIZE))) {
        if (q.length === 0) break;
        fail(
          `extent at offset ${pos}: stream ends ${q.length} bytes into a ${EXTENT_HEADER_SIZE}-byte extent header (truncated archive or trailing garbage)`,
          pos,
          'extent',
        );
      }
      const start = pos;
      const eh = relabel(() => decodeExtentHeader(q.take(EXTENT_HEADER_SIZE), header.uuid, start));
      const at = `extent at offset ${start}`;
      /** len: bytes of the cluster's stored blocks in the extent's data; keepLen: the part of them that is yielded */
      const slots: { state: DeviceState; cluster: number; mask: number; len: number; keepLen: number }[] = [];
      for (let i = 0; i < eh.entries.length; i++) {
        const e = eh.entries[i];
        if (e.devId === 0) continue;
        const state = devices[e.devId];
        if (state === undefined) fail(`${at}: slot ${i}: unknown dev_id ${e.devId}`, start, 'dev_id');
        const name = state.dev.name;
        if (e.cluster >= state.clusters) {
          fail(
            `${at}: slot ${i}: cluster ${e.cluster} beyond the end of device '${name}' (${state.clusters} clusters)`,
            start,
            'cluster_num',
          );
        }
        const allowed = allowedMask(state.dev.size, e.cluster);
        // a full mask on a device's partial last cluster is whole-cluster data: PVE's writer
        // stored it so before June 2020 (pve-qemu "Fix backup for not 64k-aligned storages"),
        // and vma-reader.c clips it at the device end. Its blocks past the end are read, then
        // dropped: the record's mask and blocks hold only those before the end.
        const keep = e.mask === FULL_MASK ? allowed : e.mask;
        if ((keep & ~allowed) !== 0) {
          fail(
            `${at}: slot ${i}: mask 0x${e.mask.toString(16)} of cluster ${e.cluster} of device '${name}' stores blocks past the device end`,
            start,
            'mask',
          );
        }
        if (!state.seen.add(e.cluster)) {
          fail(`${at}: slot ${i}: duplicated cluster ${e.cluster} of device '${name}'`, start, 'cluster_num');
        }
        slots.push({ state, cluster: e.cluster, mask: keep, len: popcount16(e.mask) * BLOCK_SIZE, keepLen: popcount16(keep) * BLOCK_SIZE });
      }
      // ---- the extent's data: cut it into the clusters' blocks while the input produces it ----
      // A cluster lying inside one input chunk becomes a view of that chunk (no copy); one that
      // spans chunks is copied into a buffer of its own (at most 64 KiB; in transient mode one
      // reused extent after extent) as its pieces arrive,
      // so the copying overlaps the producer's next read (a Readable refills when we take a chunk).
      const bodyLen = eh.blockCount * BLOCK_SIZE;
      const blocks: Buffer[] = new Array(slots.length);
      let cur = 0; // cluster being assembled
      let curBuf: Buffer | undefined; // its own buffer, when it spans chunks
      let curFill = 0;
      let have = 0; // body bytes consumed so far
      let assembled = 0; // transient mode: assembly buffers used in this extent
      while (cur < slots.length && slots[cur]!.len === 0) blocks[cur++] = EMPTY;
      while (have < bodyLen) {
        let piece = q.shiftChunk();
        if (piece === undefined) {
          const r = ended ? undefined : await it.next();
          if (r === undefined || r.done) {
            ended = true;
            fail(`${at}: truncated, stream ends after ${have} of ${bodyLen} data bytes`, start, 'data');
          }
          piece = toBuffer(r.value);
        }
        while (piece.length > 0 && cur < slots.length) {
          const len = slots[cur]!.len;
          if (curBuf === undefined && piece.length >= len) {
            blocks[cur] = piece.subarray(0, len);
            piece = piece.subarray(len);
            have += len;
          } else {
            curBuf ??= transient ? (assembly[assembled++] ??= Buffer.allocUnsafe(CLUSTER_SIZE)).subarray(0, len) : Buffer.allocUnsafe(len);
            const k = Math.min(len - curFill, piece.length);
            piece.copy(curBuf, curFill, 0, k);
            piece = piece.subarray(k);
            curFill += k;
            have += k;
            if (curFill < len) break;
            blocks[cur] = curBuf;
            curBuf = undefined;
            curFill = 0;
          }
          cur++;
          while (cur < slots.length && slots[cur]!.len === 0) blocks[cur++] = EMPTY;
        }
        if (piece.length > 0) q.pushFront(piece);
        else retire?.(piece);
      }
      pos = start + extentByteSize(eh.blockCount);
      for (let i = 0; i < slots.length; i++) {
        const s = slots[i];
        const data = blocks[i]!;
        yield { type: 'cluster', devId: s.state.dev.id, cluster: s.cluster, mask: s.mask, blocks: s.keepLen < s.len ? data.subarray(0, s.keepLen) : data };
      }
    }

    // ---- completeness (§3.4) ----
    if (checkComplete) {
      for (const state of devices) {
        if (state === undefined) continue;
        const missing = state.seen.firstMissing();
        if (missing >= 0) {
          fail(
            `archive incomplete: missing cluster ${missing} of device '${state.dev.name}' (${state.clusters - state.seen.count} of ${state.clusters} clusters missing; truncated archive?)`,
            pos,
            'cluster_num',
          );
        }
      }
    }
  } finally {
    if (!ended) {
      try {
        await it.return?.();
      } catch {
        // closing the input early: the reader's own outcome (result or error) is what counts
      }
    }
  }
}

/**
 * The cluster's 65536 bytes with the zero blocks filled in: `c.blocks` itself when the mask is
 * full, else `into` (65536 bytes, overwritten) or a fresh buffer.
 */
export function expandCluster(c: VmaCluster, into?: Buffer): Buffer {
  const n = popcount16(c.mask);
  if (c.blocks.length !== n * BLOCK_SIZE) {
    throw new RangeError(`internal error: cluster ${c.cluster} has ${c.blocks.length} bytes for mask 0x${c.mask.toString(16)}`);
  }
  if (c.mask === FULL_MASK) return c.blocks;
  if (into !== undefined && into.length !== CLUSTER_SIZE) throw new RangeError(`internal error: expandCluster target has ${into.length} bytes`);
  const out = into ?? Buffer.alloc(CLUSTER_SIZE);
  let src = 0;
  for (let j = 0; j < BLOCKS_PER_CLUSTER; j++) {
    if (c.mask & (1 << j)) {
      c.blocks.copy(out, j * BLOCK_SIZE, src, src + BLOCK_SIZE);
      src += BLOCK_SIZE;
    } else if (into !== undefined) {
      out.fill(0, j * BLOCK_SIZE, (j + 1) * BLOCK_SIZE); // a fresh buffer is zero already
    }
  }
  return out;
}
