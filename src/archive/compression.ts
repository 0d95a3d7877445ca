/**
 * Compression stages for vzdump archives: the real `zstd`, `lzop`, `gzip`/`pigz` binaries run as
 * child processes, exposed as async generators of Buffers (vma-format.md §7, pve-integration.md §6.1).
 *
 * Owns: the argv PVE uses for each codec, feeding a child's stdin with backpressure, yielding its
 * stdout as it arrives, and turning its exit status into a CompressionError. Leaves file naming
 * to ./names.ts and the VMA format to src/vma.
 * Guarantees: 'none' spawns nothing; a non-zero exit, a signal, a missing binary or a child that
 * stops reading its input early is an error, never a short read (a truncated .zst/.gz/.lzo fails);
 * when the consumer stops early (generator return/throw) or the AbortSignal fires, the child is
 * killed and reaped and no EPIPE escapes. Does not guarantee that the upstream input iterator is
 * closed at once after an early stop: it is closed when it next yields a chunk. A generator's
 * return() only takes effect at its next yield, so to cancel a stage that is waiting for data
 * (a stalled input) use the AbortSignal, which kills the child at once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import type { Readable } from 'node:stream';
import * as path from 'node:path';
import { CompressionError, IoError, stderrTail } from '../errors';
import { compressionFromFileName, type Compression } from './names';
import { POOL_CHUNK, type ChunkPool } from './chunk-pool';
import { openPooledSocket } from './pooled-socket';

/** how far a child's output is read ahead of the consumer */
const OUTPUT_READ_AHEAD = 4 << 20;
const STDERR_KEEP = 32 * 1024;
const KILL_GRACE_MS = 5000;
const EMPTY = Buffer.alloc(0);

const PACKAGE: Record<string, string> = { zstd: 'zstd', lzop: 'lzop', gzip: 'gzip', pigz: 'pigz' };

export interface DecompressOptions {
  /** file name for messages ("'x.vma.zst': zstd failed …") */
  label?: string;
  signal?: AbortSignal;
}

export interface CompressOptions extends DecompressOptions {
  /** zstd and pigz worker threads (vzdump default: 1) */
  threads?: number;
}

export type ByteSource = AsyncIterable<Buffer> | NodeJS.ReadableStream;

/** The argv PVE runs to decompress (pve-storage `decompressor_info`; `zcat` spelled `gzip -d -c`). */
export function decompressArgv(c: Exclude<Compression, 'none'>): string[] {
  switch (c) {
    case 'zst':
      return ['zstd', '-q', '-d', '-c'];
    case 'lzo':
      return ['lzop', '-d', '-c'];
    case 'gz':
      return ['gzip', '-d', '-c'];
  }
}

let pigzPath: string | null | undefined;
/** Whether `name` is an executable on PATH (cached for pigz). */
function onPath(name: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    try {
      fs.accessSync(path.join(dir, name), fs.constants.X_OK);
      return true;
    } catch {
      // next
    }
  }
  return false;
}

/** The argv vzdump runs to compress (pve-manager `compressor_info`). */
export function compressArgv(c: Exclude<Compression, 'none'>, threads = 1): string[] {
  const n = Math.max(1, Math.floor(threads));
  switch (c) {
    case 'zst':
      return ['zstd', '-q', '-c', `--threads=${n}`];
    case 'lzo':
      return ['lzop', '-c'];
    case 'gz':
      if (pigzPath === undefined) pigzPath = onPath('pigz') ? 'pigz' : null;
      return pigzPath ? ['pigz', '-c', '--rsyncable', '-p', String(n)] : ['gzip', '-c', '--rsyncable'];
  }
}

function prefix(label: string | undefined): string {
  return label ? `'${label}': ` : '';
}

/** Turn a Buffer/string/Uint8Array chunk into a Buffer without copying when possible. */
function asBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  return Buffer.from(String(chunk));
}

type StdinSource = { kind: 'iter'; source: ByteSource } | { kind: 'fd'; fd: number };

/**
 * Yields a stream's chunks as they arrive, in flowing mode: each chunk the socket or pipe delivers
 * (64 KiB) is queued as it is, never concatenated (paused-mode read() joins the buffered chunks
 * into a fresh multi-MiB buffer per call, which cost page faults on every byte). The stream is
 * paused while OUTPUT_READ_AHEAD bytes wait, so the writer keeps working while the consumer is
 * busy, within bounded memory. Ends at the stream's end or error; returns the error, if any.
 */
async function* flowingChunks(out: Readable): AsyncGenerator<Buffer, Error | undefined> {
  const queue: Buffer[] = [];
  let head = 0;
  let queued = 0;
  let ended = false;
  let error: Error | undefined;
  let wake: (() => void) | undefined;
  const poke = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  out.on('data', (chunk: Buffer) => {
    queue.push(chunk);
    queued += chunk.length;
    if (queued >= OUTPUT_READ_AHEAD) out.pause();
    poke();
  });
  const onEnd = () => {
    ended = true;
    poke();
  };
  out.once('end', onEnd);
  out.once('close', onEnd);
  out.on('error', (err: Error) => {
    error ??= err;
    poke();
  });
  for (;;) {
    if (head < queue.length) {
      const chunk = queue[head]!;
      queue[head++] = EMPTY;
      if (head > 1024 && head * 2 > queue.length) {
        queue.splice(0, head);
        head = 0;
      }
      queued -= chunk.length;
      if (queued < OUTPUT_READ_AHEAD && out.isPaused() && !ended) out.resume();
      yield chunk;
      continue;
    }
    if (ended || out.destroyed || out.readableEnded) return error;
    await new Promise<void>((resolve) => (wake = resolve));
  }
}

/**
 * Run `argv` as a filter: `stdin` goes to the child's stdin, the child's stdout is yielded (read
 * into `outputPool`'s buffers when given: ./pooled-socket.ts; openArchive's consumer releases them).
 * The core of decompress/compress/openArchive.
 */
async function* runFilter(argv: string[], stdin: StdinSource, opts: DecompressOptions, outputPool?: ChunkPool): AsyncGenerator<Buffer> {
  const { label, signal } = opts;
  signal?.throwIfAborted();
  const tool = argv[0]!;

  // where a socket cannot be made (a temp dir too deep for a socket path, say), the pipe does the job
  const pooled = outputPool ? await openPooledSocket(outputPool).catch(() => undefined) : undefined;
  let child: ChildProcess;
  try {
    child = spawn(tool, argv.slice(1), {
      stdio: [stdin.kind === 'fd' ? stdin.fd : 'pipe', pooled ? pooled.childEnd : 'pipe', 'pipe'],
      env: process.env, // explicit, so a PATH changed at run time (and in test sandboxes) is honoured
    });
  } catch (err) {
    pooled?.destroy();
    throw new CompressionError(`${prefix(label)}cannot run ${tool}: ${(err as Error).message}`, argv, null, '', { cause: err });
  } finally {
    pooled?.childEnd.destroy();
  }

  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => {
    stderr += s;
    if (stderr.length > 2 * STDERR_KEEP) stderr = stderr.slice(stderr.length - STDERR_KEEP);
  });

  // exit status: 'close' (stdio drained) or a spawn 'error' (ENOENT), whichever comes first
  let exitInfo: { code: number | null; sig: NodeJS.Signals | null; err?: NodeJS.ErrnoException } | undefined;
  const exited = new Promise<NonNullable<typeof exitInfo>>((resolve) => {
    child.once('error', (err: NodeJS.ErrnoException) => {
      exitInfo ??= { code: null, sig: null, err };
      resolve(exitInfo);
    });
    child.once('close', (code, sig) => {
      exitInfo ??= { code, sig };
      resolve(exitInfo);
    });
  });
  const spawned = new Promise<void>((resolve) => {
    child.once('spawn', () => resolve());
    child.once('error', () => resolve());
  });

  const missingBinary = (err: NodeJS.ErrnoException) =>
    new CompressionError(
      err.code === 'ENOENT'
        ? `${prefix(label)}${tool} not found - apt-get install ${PACKAGE[tool] ?? tool}`
        : `${prefix(label)}cannot run ${tool}: ${err.message}`,
      argv,
      null,
      '',
      { cause: err },
    );

  let killTimer: NodeJS.Timeout | undefined;
  const kill = () => {
    if (child.exitCode !== null || child.signalCode !== null || exitInfo) return;
    child.kill('SIGTERM');
    killTimer ??= setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS).unref();
  };
  const onAbort = () => kill();
  signal?.addEventListener('abort', onAbort, { once: true });

  // feed stdin with backpressure
  let stopped = false;
  let pumpError: unknown;
  let stdinClosedEarly = false;
  let pump: Promise<void> = Promise.resolve();
  if (stdin.kind === 'iter') {
    const sink = child.stdin!;
    sink.on('error', (err: NodeJS.ErrnoException) => {
      // EPIPE/ECONNRESET: the child closed its stdin (exited or failed); judged after exit
      if (err.code === 'EPIPE' || err.code === 'ECONNRESET' || err.code === 'ERR_STREAM_DESTROYED') stdinClosedEarly = true;
      else pumpError ??= err;
    });
    const sinkGone = () => sink.destroyed || sink.writableEnded || stdinClosedEarly;
    const waitDrain = () =>
      new Promise<void>((resolve) => {
        const done = () => {
          sink.off('drain', done);
          sink.off('close', done);
          sink.off('error', done);
          resolve();
        };
        sink.on('drain', done);
        sink.on('close', done);
        sink.on('error', done);
      });
    pump = (async () => {
      await spawned;
      if (exitInfo?.err) return;
      try {
        for await (const chunk of stdin.source as AsyncIterable<unknown>) {
          if (stopped || sinkGone()) break;
          if (!sink.write(asBuffer(chunk))) {
            await waitDrain();
            if (stopped) break;
          }
        }
        if (!stopped && !sinkGone()) sink.end();
        else if (!sink.destroyed) sink.destroy();
      } catch (err) {
        // the input failed: stop the child, report the input's error
        pumpError ??= err;
        sink.destroy();
        kill();
      }
    })();
  }

  await spawned;
  if (exitInfo?.err) {
    signal?.removeEventListener('abort', onAbort);
    pooled?.destroy();
    await pump;
    throw missingBinary(exitInfo.err);
  }

  const out = pooled ?? child.stdout!;
  let completed = false;
  try {
    yield* pooled ? pooled.chunks : flowingChunks(child.stdout!);
    const status = await exited;
    signal?.throwIfAborted();
    if (pumpError) throw pumpError; // the input failed first (and the child was killed for it)
    if (status.err) throw missingBinary(status.err);
    const tail = explainTail(tool, stderrTail(stderr));
    if (status.code !== 0) {
      // not awaiting the pump: it may be waiting on a slow input; the finally block stops it
      const how = status.sig ? `killed by signal ${status.sig}` : `exit ${status.code}`;
      throw new CompressionError(`${prefix(label)}${tool} failed (${how})${tail ? `: ${tail.replace(/\s*\n\s*/g, ' | ')}` : ''}`, argv, status.code, tail);
    }
    await pump; // exit 0: the input must have been written whole
    if (pumpError) throw pumpError;
    if (stdinClosedEarly) {
      throw new CompressionError(`${prefix(label)}${tool} stopped reading its input early${tail ? `: ${tail}` : ''}`, argv, status.code, tail);
    }
    completed = true;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    if (!completed) {
      stopped = true;
      kill();
      out.destroy();
      child.stdin?.destroy();
      await exited;
    }
    if (killTimer) clearTimeout(killTimer);
  }
}

/**
 * A tool's stderr made plain where it misleads: lzop reports a stream that ends early as the
 * leftover errno of its last read, "Inappropriate ioctl for device".
 */
function explainTail(tool: string, tail: string): string {
  if (tool === 'lzop' && /Inappropriate ioctl for device/.test(tail)) return `${tail} (unexpected end of the compressed data: the file is truncated)`;
  return tail;
}

/** Pass-through for 'none', honouring the signal. */
async function* passThrough(input: ByteSource, signal?: AbortSignal): AsyncGenerator<Buffer> {
  signal?.throwIfAborted();
  for await (const chunk of input as AsyncIterable<unknown>) {
    signal?.throwIfAborted();
    yield asBuffer(chunk);
  }
}

/** Decompress `input` with PVE's decompressor for `c` ('none' passes the bytes through, no process). */
export function decompress(input: ByteSource, c: Compression, opts: DecompressOptions = {}): AsyncGenerator<Buffer> {
  if (c === 'none') return passThrough(input, opts.signal);
  return runFilter(decompressArgv(c), { kind: 'iter', source: input }, opts);
}

/** Compress `input` the way vzdump does for `c` ('none' passes the bytes through, no process). */
export function compress(input: AsyncIterable<Buffer>, c: Compression, opts: CompressOptions = {}): AsyncGenerator<Buffer> {
  if (c === 'none') return passThrough(input, opts.signal);
  return runFilter(compressArgv(c, opts.threads ?? 1), { kind: 'iter', source: input }, opts);
}

export interface OpenArchiveOptions extends DecompressOptions {
  /** override the compression implied by the file name */
  compression?: Compression;
  /**
   * An uncompressed file, or the decompressor's output for a compressed one, is read into this
   * pool's buffers (ChunkPool.chunkSize each), which the consumer hands back with `pool.release`;
   * stdin as a pipe ignores it.
   */
  chunkPool?: ChunkPool;
}

/**
 * Reads kept in flight through a pool while the consumer works on a chunk, so page-cache copies run
 * on several threads while the consumer parses. Measured with 4 MiB chunks on 2 cores: for a
 * 3.4 GB .vma (reader alone) 1 0.68 s, 2 0.50 s, 3 0.44 s (`cat` 0.40 s); for a 2.15 GB .vma
 * (`vma verify`, median of 9 runs, twice) 3 0.33 s, 4 0.32 s, 5 0.31-0.32 s, 8 0.32 s (`cat` 0.24 s).
 */
const POOL_READS_AHEAD = 4;

/** What readFd needs of an open file: a FileHandle has it. */
export interface ReadHandle {
  read(buffer: Buffer, offset: number, length: number, position: number | null): Promise<{ bytesRead: number }>;
  stat(): Promise<fs.Stats>;
}

function readError(name: string, at: number, err: unknown): IoError {
  return new IoError(`'${name}': read at offset ${at} failed - ${(err as Error).message}`, name, { cause: err });
}

/**
 * Reads an opened file or pipe from where it stands, in fresh buffers of POOL_CHUNK bytes: sequential reads, the next
 * one started as the consumer gets the current chunk (fresh, because the VMA reader may keep
 * zero-copy views). Works on anything that can be read, seekable or not.
 */
async function* readSequential(fh: ReadHandle, name: string, signal?: AbortSignal): AsyncGenerator<Buffer> {
  let pos = 0;
  const readChunk = (): Promise<Buffer> => {
    const buf = Buffer.allocUnsafe(POOL_CHUNK);
    const at = pos;
    const read = fh.read(buf, 0, POOL_CHUNK, null).then(
      ({ bytesRead }) => {
        pos += bytesRead;
        return bytesRead === POOL_CHUNK ? buf : buf.subarray(0, bytesRead);
      },
      (err: unknown) => {
        throw readError(name, at, err);
      },
    );
    read.catch(() => undefined); // it may fail while the consumer works: not an unhandled rejection
    return read;
  };
  let next: Promise<Buffer> | undefined = readChunk();
  try {
    for (;;) {
      signal?.throwIfAborted();
      const chunk = await next;
      next = undefined;
      if (chunk.length === 0) return;
      next = readChunk();
      yield chunk;
    }
  } finally {
    // settle an outstanding read before the caller closes the handle
    await next?.catch(() => undefined);
  }
}

/**
 * Reads a regular file from offset 0 into `pool`'s buffers, POOL_READS_AHEAD positional reads ahead
 * of the consumer. A short read (end of file, or a file that changed) takes back the reads issued
 * past it and goes on from where it stopped, so no byte is skipped or repeated.
 */
async function* readPooled(fh: ReadHandle, name: string, pool: ChunkPool, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const size = pool.chunkSize;
  const inFlight: { at: number; read: Promise<Buffer> }[] = [];
  let pos = 0;
  const issue = () => {
    const buf = pool.get();
    const at = pos;
    pos += size;
    const read = fh.read(buf, 0, size, at).then(
      ({ bytesRead }) => (bytesRead === size ? buf : buf.subarray(0, bytesRead)),
      (err: unknown) => {
        pool.release(buf);
        throw readError(name, at, err);
      },
    );
    read.catch(() => undefined); // a read ahead may fail before it is awaited: not an unhandled rejection
    inFlight.push({ at, read });
  };
  const dropAhead = async () => {
    for (const { read } of inFlight.splice(0)) {
      const b = await read.catch(() => undefined);
      if (b) pool.release(b);
    }
  };
  try {
    for (;;) {
      signal?.throwIfAborted();
      if (inFlight.length === 0) issue();
      const { at, read } = inFlight.shift()!;
      const chunk = await read;
      if (chunk.length === 0) {
        pool.release(chunk);
        return;
      }
      let more = POOL_READS_AHEAD;
      if (chunk.length < size) {
        // most likely the end: take back the reads issued past it, and look once more from here
        await dropAhead();
        pos = at + chunk.length;
        more = 1;
      }
      while (inFlight.length < more) issue();
      yield chunk;
    }
  } finally {
    // settle outstanding reads before the caller closes the handle
    await dropAhead();
  }
}

/**
 * Reads an opened file in chunks: through `pool` (readPooled) when one is given and the file is
 * regular, else sequentially (readSequential; pipes and devices cannot seek). A failing read is an
 * IoError naming the file and offset; reads still in flight are settled before this returns, so
 * the caller may close the handle. Exported for tests (a fake handle can fail or cut short any
 * read); callers use openArchive.
 */
export async function* readFd(fh: ReadHandle, name: string, signal?: AbortSignal, pool?: ChunkPool): AsyncGenerator<Buffer> {
  if (pool !== undefined && (await fh.stat()).isFile()) yield* readPooled(fh, name, pool, signal);
  else yield* readSequential(fh, name, signal);
}

/** fs.read and fstat on a bare descriptor, as the part of a FileHandle that readFd uses. */
function fdHandle(fd: number): ReadHandle {
  return {
    read: (buffer, offset, length, position) =>
      new Promise((resolve, reject) => fs.read(fd, buffer, offset, length, position, (err, bytesRead) => (err ? reject(err) : resolve({ bytesRead })))),
    stat: () => new Promise((resolve, reject) => fs.fstat(fd, (err, st) => (err ? reject(err) : resolve(st)))),
  };
}

/**
 * Reads an open descriptor to its end. A pipe or socket (`zstd -dc x.vma.zst | vzdump-zfs vma verify -`,
 * a named FIFO) is read as a stream, in the event loop, and the stream takes the descriptor over
 * (`handOver` is called; it closes it): fs reads on a pipe go through the thread pool once per
 * 64 KiB the writer hands over, which made such a pipeline 3-4x slower. Anything else goes to
 * readFd: a regular file through `pool` (stdin redirected from a file is read whole, from its
 * start), a terminal or device sequentially.
 */
async function* readDescriptor(fd: number, name: string, handOver: () => void, signal?: AbortSignal, pool?: ChunkPool): AsyncGenerator<Buffer> {
  signal?.throwIfAborted();
  const h = fdHandle(fd);
  const st = await h.stat();
  if (!st.isFIFO() && !st.isSocket()) {
    yield* readFd(h, name, signal, pool);
    return;
  }
  handOver();
  const input = new net.Socket({ fd, readable: true, writable: false });
  const onAbort = () => input.destroy();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const err = yield* flowingChunks(input);
    signal?.throwIfAborted();
    if (err) throw new IoError(`'${name}': read failed - ${err.message}`, name, { cause: err });
  } finally {
    signal?.removeEventListener('abort', onAbort);
    input.destroy();
  }
}

/**
 * Open an archive file (`-` = stdin) and yield its decompressed bytes. The decompressor is chosen
 * from the file name (compressionFromFileName) unless `opts.compression` is given. A compressed
 * file is handed to the decompressor as its stdin file descriptor, so no bytes pass through JS
 * on the way in; an uncompressed one is read by readDescriptor.
 */
export async function* openArchive(file: string, opts: OpenArchiveOptions = {}): AsyncGenerator<Buffer> {
  const c = opts.compression ?? compressionFromFileName(file);
  const label = opts.label ?? (file === '-' ? '(stdin)' : path.basename(file));
  const stdin = file === '-';
  let fd = 0;
  if (!stdin) {
    try {
      fd = await new Promise<number>((resolve, reject) => fs.open(file, 'r', (err, n) => (err ? reject(err) : resolve(n))));
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new IoError(`'${file}': ${e.code === 'ENOENT' ? 'no such file' : `cannot open - ${e.message}`}`, file, { cause: err });
    }
  }
  let ours = !stdin; // closed here unless a stream took it over
  try {
    if (c === 'none') yield* readDescriptor(fd, stdin ? label : file, () => (ours = false), opts.signal, opts.chunkPool);
    else yield* runFilter(decompressArgv(c), { kind: 'fd', fd }, { label, signal: opts.signal }, opts.chunkPool);
  } finally {
    if (ours) await new Promise<void>((resolve) => fs.close(fd, () => resolve()));
  }
}
