/** Small file I/O helpers shared by the CLI, ingest and the bench: positional reads and writes that finish or fail. */
import * as fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

/** Writes all of `buf` at `pos`, calling pwrite again after a short write (a file system filling up). */
export async function writeFully(fh: FileHandle, buf: Uint8Array, pos: number): Promise<void> {
  for (let off = 0; off < buf.length; ) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off, pos + off);
    if (bytesWritten <= 0) throw new Error(`no progress writing ${buf.length - off} bytes at offset ${pos + off}`);
    off += bytesWritten;
  }
}

/** Writes `len` bytes of `buf` from `off` at file position `pos`, calling pwrite again after a short write. */
export function pwriteAllSync(fd: number, buf: Uint8Array, off: number, len: number, pos: number): void {
  for (let done = 0; done < len; ) {
    const n = fs.writeSync(fd, buf, off + done, len - done, pos + done);
    if (n <= 0) throw new Error(`no progress writing ${len - done} bytes at offset ${pos + done}`);
    done += n;
  }
}

/** Reads up to `len` bytes at file position `pos` into `buf` at `off`; fewer only at the end of the file. Returns the bytes read. */
export function preadFullSync(fd: number, buf: Uint8Array, off: number, len: number, pos: number): number {
  let got = 0;
  while (got < len) {
    const n = fs.readSync(fd, buf, off + got, len - got, pos + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

/** `fs.read` on a raw fd as a promise (the fd API has none). */
function readAt(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

/** `fs.write` on a raw fd as a promise. */
function writeAt(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

/** preadFullSync on libuv's thread pool: up to `len` bytes, fewer only at the end of the file. */
export async function preadFull(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  let got = 0;
  while (got < len) {
    const n = await readAt(fd, buf, off + got, len - got, pos + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

/** pwriteAllSync on libuv's thread pool: all `len` bytes, or an error (also when a write makes no progress). */
export async function pwriteAll(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<void> {
  for (let done = 0; done < len; ) {
    const n = await writeAt(fd, buf, off + done, len - done, pos + done);
    if (n <= 0) throw new Error(`no progress writing ${len - done} bytes at offset ${pos + done}`);
    done += n;
  }
}
