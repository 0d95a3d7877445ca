/**
 * A child process's output read straight into a ChunkPool's buffers.
 *
 * Node reads a child's stdout pipe into a fresh 64 KiB buffer per read, and a consumer that parses
 * records across those buffers copies every record that straddles two of them. Here the child's
 * stdout is one end of a Unix socket pair made through a listening socket in a private directory,
 * and the other end is read with Node's `onread` option into the free space of the current pool
 * chunk, so a decompressor's output lands in buffers that go round (already mapped, warm in cache)
 * and a record straddles two buffers only once every few MiB.
 *
 * Owns the socket pair (the listening socket and its directory are gone before the child starts)
 * and the hand-over of chunks to one consumer. Leaves the child to the caller: it gets
 * `childEnd` as the child's stdout and must destroy it in this process once the child has it.
 * Guarantees: chunks are yielded in order, each a view of a buffer lent by `pool` and never written
 * again until the consumer hands it back with `pool.release`; at most READ_AHEAD_CHUNKS filled
 * chunks wait for the consumer (the socket stops being read beyond that).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChunkPool } from './chunk-pool';

/** filled chunks that may wait for the consumer before the socket is no longer read */
const READ_AHEAD_CHUNKS = 1;
/** a chunk with less free space than this is handed over as it is: a read into it would be short */
const MIN_READ_SPACE = 64 * 1024;
/** a waiting consumer is handed a chunk once this much is in it, rather than waiting for it to fill */
const HAND_OVER_WAITING = 512 * 1024;

export interface PooledSocket {
  /** give this to the child as its stdout, then destroy it here */
  childEnd: net.Socket;
  /** the output, chunk by chunk; returns the socket's error, if any */
  chunks: AsyncGenerator<Buffer, Error | undefined>;
  /** stops reading and closes this end */
  destroy(): void;
}

/** Makes the socket pair (see the file comment). Rejects when the platform has no Unix sockets. */
export async function openPooledSocket(pool: ChunkPool): Promise<PooledSocket> {
  const dir = await mkdtemp(join(tmpdir(), 'vzdump-zfs-out-'));
  const server = net.createServer({ pauseOnConnect: true });
  try {
    const sockPath = join(dir, 'out');
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(sockPath, () => resolve());
    });
    const accepted = new Promise<net.Socket>((resolve, reject) => {
      server.once('connection', resolve);
      server.once('error', reject);
    });
    accepted.catch(() => undefined); // awaited below unless the connect fails first
    const reader = new PoolReader(pool);
    const socket = net.connect({ path: sockPath, onread: { buffer: () => reader.space(), callback: (n) => reader.filled(n) } });
    reader.attach(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const childEnd = await accepted;
    childEnd.on('error', () => undefined); // this process only hands it on and closes it
    return { childEnd, chunks: reader.chunks(), destroy: () => socket.destroy() };
  } finally {
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
}

class PoolReader {
  private current: Buffer;
  private fill = 0;
  private readonly queue: Buffer[] = [];
  private ended = false;
  private error: Error | undefined;
  private wake: (() => void) | undefined;
  private socket: net.Socket | undefined;
  /** the socket is not being read: filled() said so (Socket.isPaused() does not show it) */
  private paused = false;

  constructor(private readonly pool: ChunkPool) {
    this.current = pool.get();
  }

  attach(socket: net.Socket): void {
    this.socket = socket;
    const onEnd = () => {
      this.ended = true;
      this.poke();
    };
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.on('error', (err: Error) => {
      this.error ??= err;
      this.poke();
    });
    socket.resume(); // flowing, so that 'end' is emitted (onread delivers no 'data' events)
  }

  /** where the next read goes: the free space of the current chunk */
  space(): Buffer {
    return this.current.subarray(this.fill);
  }

  /** `n` bytes were read into space(); false pauses the socket */
  filled(n: number): boolean {
    this.fill += n;
    const free = this.current.length - this.fill;
    if (free < MIN_READ_SPACE || (this.wake !== undefined && this.fill >= HAND_OVER_WAITING)) this.handOver();
    if (this.queue.length <= READ_AHEAD_CHUNKS) return true;
    this.paused = true;
    return false;
  }

  private handOver(): void {
    if (this.fill === 0) return;
    this.queue.push(this.current.subarray(0, this.fill));
    this.current = this.pool.get();
    this.fill = 0;
    this.poke();
  }

  private poke(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  async *chunks(): AsyncGenerator<Buffer, Error | undefined> {
    try {
      for (;;) {
        const chunk = this.queue.shift();
        if (chunk !== undefined) {
          if (this.paused && this.queue.length <= READ_AHEAD_CHUNKS) {
            this.paused = false;
            this.socket!.resume(); // with onread, resume() starts reading the handle again
          }
          yield chunk;
          continue;
        }
        if (this.ended || this.error) {
          if (this.fill > 0) {
            this.handOver();
            continue;
          }
          return this.error;
        }
        await new Promise<void>((resolve) => (this.wake = resolve));
      }
    } finally {
      // no read may land in a buffer once it is back in the pool
      this.socket?.destroy();
      this.pool.release(this.current);
      for (const c of this.queue.splice(0)) this.pool.release(c);
    }
  }
}
