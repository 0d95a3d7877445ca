/**
 * Reads raw disk images sequentially and hands them to the VMA writer as 64 KiB clusters.
 *
 * Used wherever an archive is built from image files: `restore` (images in a snapshot), `vma
 * create`, and the demo's generated guests. Reads 4 MiB at a time into two reused buffers, with the
 * next read already in flight while the current chunk's clusters are consumed, so the disk and the
 * writer work at the same time and memory stays at 8 MiB. The writer copies what it keeps, so a
 * yielded cluster's `data` is only valid until the next one is requested. A chunk whose clusters
 * the source's `knownZero` says are all zero is not read: its clusters are the shared zero
 * cluster.
 */
import * as fs from 'node:fs';
import { IntegrityError, IoError, VzError } from '../errors';
import { CLUSTER_SIZE as CLUSTER, ZERO_CLUSTER } from '../vma/constants';
import type { VmaClusterData } from '../vma/types';

const CHUNK = 4 << 20;

export interface ImageSource {
  path: string;
  /** device size in bytes: clusters are cut up to here */
  size: number;
  /**
   * Whether clusters `first` to `first + count - 1` are all known to be zero without reading them
   * (restore: from the backup's digest file); false when unsure.
   */
  knownZero?: (first: number, count: number) => Promise<boolean>;
}

export interface ImageClusterOptions {
  /**
   * 'exact': the file must have exactly `size` bytes (restore: anything else is damage);
   * 'pad': a shorter file reads as zeros up to `size` (vma create rounds sizes up to 512).
   */
  sizeCheck: 'exact' | 'pad';
  signal?: AbortSignal;
}

/** The clusters of `images` in order; dev ids are 1, 2, … in the order given. */
export async function* imageClusters(images: ImageSource[], opts: ImageClusterOptions): AsyncGenerator<VmaClusterData> {
  const buffers = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)];
  for (const [i, img] of images.entries()) {
    const devId = i + 1;
    let fh: fs.promises.FileHandle;
    try {
      fh = await fs.promises.open(img.path, 'r');
    } catch (e) {
      throw new IoError(`cannot open disk image '${img.path}': ${(e as Error).message}`, img.path, { cause: e });
    }
    try {
      const st = await fh.stat();
      if (opts.sizeCheck === 'exact' && st.size !== img.size) {
        throw new IntegrityError(`disk image '${img.path}' has ${st.size} bytes, expected ${img.size}`, img.path);
      }
      /** reads the chunk at `pos` into `buf`; its length, and whether it was skipped as known zero */
      const fill = async (buf: Buffer, pos: number): Promise<{ len: number; zero: boolean }> => {
        const want = Math.min(CHUNK, img.size - pos);
        if (img.knownZero && (await img.knownZero(pos / CLUSTER, Math.ceil(want / CLUSTER)))) return { len: want, zero: true };
        let got = 0;
        try {
          while (got < want) {
            const { bytesRead } = await fh.read(buf, got, want - got, pos + got);
            if (bytesRead === 0) break;
            got += bytesRead;
          }
        } catch (e) {
          throw new IoError(`cannot read disk image '${img.path}' at offset ${pos + got}: ${(e as Error).message}`, img.path, { cause: e });
        }
        if (got < want) {
          if (opts.sizeCheck === 'exact') throw new IntegrityError(`disk image '${img.path}' ended at ${pos + got} of ${img.size} bytes`, img.path);
          buf.fill(0, got, want);
        }
        return { len: want, zero: false };
      };
      let turn = 0;
      let pos = 0;
      let pending: Promise<{ len: number; zero: boolean }> | undefined = img.size > 0 ? fill(buffers[0]!, 0) : undefined;
      let cluster = 0;
      while (pending) {
        const { len, zero } = await pending;
        const buf = buffers[turn]!;
        const next = pos + len;
        turn ^= 1;
        pending = next < img.size ? fill(buffers[turn]!, next) : undefined;
        // keep a rejected read-ahead from becoming an unhandled rejection if the consumer stops early
        pending?.catch(() => undefined);
        for (let off = 0; off < len; off += CLUSTER) {
          if (opts.signal?.aborted) throw new VzError('cancelled while reading disk images');
          const n = Math.min(CLUSTER, len - off);
          const data = zero ? (n === CLUSTER ? ZERO_CLUSTER : ZERO_CLUSTER.subarray(0, n)) : buf.subarray(off, off + n);
          yield { devId, cluster: cluster++, data };
        }
        pos = next;
      }
    } finally {
      await fh.close();
    }
  }
}
