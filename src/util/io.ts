/** Small file I/O helpers shared by the CLI and the bench. */
import type { FileHandle } from 'node:fs/promises';

/** Writes all of `buf` at `pos`, calling pwrite again after a short write (a file system filling up). */
export async function writeFully(fh: FileHandle, buf: Uint8Array, pos: number): Promise<void> {
  for (let off = 0; off < buf.length; ) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off, pos + off);
    if (bytesWritten <= 0) throw new Error(`no progress writing ${buf.length - off} bytes at offset ${pos + off}`);
    off += bytesWritten;
  }
}
