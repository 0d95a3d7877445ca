import { execFileSync, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChunkPool } from '../../src/archive/chunk-pool';
import * as pooledSocket from '../../src/archive/pooled-socket';
import { compress, compressArgv, decompress, decompressArgv, openArchive, readFd } from '../../src/archive/compression';
import type { Compression } from '../../src/archive/names';
import { CompressionError, IoError } from '../../src/errors';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vz-compression-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Deterministic test data: mixed random, zero and text blocks. */
function sample(size: number, seed = 1): Buffer {
  const out = Buffer.alloc(size);
  let off = 0;
  let i = seed;
  while (off < size) {
    const n = Math.min(size - off, 4096 + ((i * 7919) % 60000));
    const kind = i % 3;
    if (kind === 0) crypto.randomFillSync(out, off, n);
    if (kind === 2) out.write(`line ${i} of the sample\n`.repeat(Math.ceil(n / 20)).slice(0, n), off);
    off += n;
    i++;
  }
  return out;
}

async function* chunksOf(buf: Buffer, size = 100_000): AsyncGenerator<Buffer> {
  for (let o = 0; o < buf.length; o += size) yield buf.subarray(o, Math.min(buf.length, o + size));
}

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

/** Live (non-zombie or zombie) children of this process whose command is `name`. */
function childrenNamed(name: string): { pid: number; state: string }[] {
  const res: { pid: number; state: string }[] = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
    } catch {
      continue;
    }
    const m = /^\d+ \((.*)\) (\S) (\d+)/.exec(stat);
    if (m && m[1] === name && Number(m[3]) === process.pid) res.push({ pid: Number(p), state: m[2]! });
  }
  return res;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const codecs: Exclude<Compression, 'none'>[] = ['zst', 'lzo', 'gz'];

describe('round trips through the real binaries', () => {
  const data = sample(3 * 1024 * 1024 + 123);

  test.each(codecs)('%s: compress -> decompress gives the input back, and the system tool agrees', async (c) => {
    const packed = await collect(compress(chunksOf(data), c, { threads: 2 }));
    expect(packed.length).toBeGreaterThan(0);
    expect(packed.equals(data)).toBe(false);
    // our stream decodes with the system binary (PVE's decompressor argv)
    const argv = decompressArgv(c);
    expect(execFileSync(argv[0]!, argv.slice(1), { input: packed, maxBuffer: 64 << 20 }).equals(data)).toBe(true);
    // and back through our decompress, fed in odd slices
    const unpacked = await collect(decompress(chunksOf(packed, 7777), c));
    expect(unpacked.equals(data)).toBe(true);
    // openArchive picks the decompressor from the name
    const f = path.join(dir, `rt.vma.${c}`);
    fs.writeFileSync(f, packed);
    expect((await collect(openArchive(f))).equals(data)).toBe(true);
  });

  test('none passes bytes through unchanged, also from a Readable', async () => {
    const f = path.join(dir, 'plain.vma');
    fs.writeFileSync(f, data);
    expect((await collect(decompress(fs.createReadStream(f), 'none'))).equals(data)).toBe(true);
    expect((await collect(compress(chunksOf(data), 'none'))).equals(data)).toBe(true);
    expect((await collect(openArchive(f))).equals(data)).toBe(true);
  });

  test('decompress accepts a Readable stream as input', async () => {
    const f = path.join(dir, 'stream.vma.zst');
    fs.writeFileSync(f, execFileSync('zstd', ['-q', '-c'], { input: data, maxBuffer: 64 << 20 }));
    expect((await collect(decompress(fs.createReadStream(f), 'zst'))).equals(data)).toBe(true);
  });

  test('empty input round-trips', async () => {
    for (const c of codecs) {
      const packed = await collect(compress(chunksOf(Buffer.alloc(0)), c));
      expect((await collect(decompress(chunksOf(packed), c))).length).toBe(0);
    }
  });

  test('argv matches vzdump and PVE', () => {
    expect(compressArgv('zst')).toEqual(['zstd', '-q', '-c', '--threads=1']);
    expect(compressArgv('zst', 4)).toEqual(['zstd', '-q', '-c', '--threads=4']);
    expect(compressArgv('lzo')).toEqual(['lzop', '-c']);
    expect(compressArgv('gz', 3)).toEqual(['pigz', '-c', '--rsyncable', '-p', '3']); // pigz is installed here
    expect(decompressArgv('zst')).toEqual(['zstd', '-q', '-d', '-c']);
    expect(decompressArgv('lzo')).toEqual(['lzop', '-d', '-c']);
    expect(decompressArgv('gz')).toEqual(['gzip', '-d', '-c']);
  });
});

describe('corrupt and truncated input is an error, never a short read', () => {
  const data = sample(2 * 1024 * 1024, 5);
  const packed: Partial<Record<Compression, Buffer>> = {};
  beforeAll(async () => {
    for (const c of codecs) packed[c] = await collect(compress(chunksOf(data), c));
  });

  test.each(codecs)('%s truncated', async (c) => {
    const p = packed[c]!;
    const cut = p.subarray(0, Math.floor(p.length * 0.6));
    const err = await collect(decompress(chunksOf(cut), c, { label: `x.vma.${c}` })).catch((e) => e);
    expect(err).toBeInstanceOf(CompressionError);
    expect(err.message).toMatch(new RegExp(`^'x\\.vma\\.${c}': ${decompressArgv(c)[0]} failed \\(exit \\d+\\)`));
    expect(err.exitCode).not.toBe(0);
    expect(err.argv).toEqual(decompressArgv(c));
  });

  test("lzop's message for a cut stream says that it is truncated", async () => {
    const p = packed.lzo!;
    const err = await collect(decompress(chunksOf(p.subarray(0, Math.floor(p.length / 2))), 'lzo', { label: 'x.vma.lzo' })).catch((e) => e);
    expect(err.message).toMatch(/\(unexpected end of the compressed data: the file is truncated\)$/);
  });

  test.each(codecs)('%s truncated file via openArchive', async (c) => {
    const p = packed[c]!;
    const f = path.join(dir, `trunc.vma.${c}`);
    fs.writeFileSync(f, p.subarray(0, p.length - 100));
    const err = await collect(openArchive(f)).catch((e) => e);
    expect(err).toBeInstanceOf(CompressionError);
    expect(err.message).toContain(`'trunc.vma.${c}': `);
  });

  test.each(codecs)('%s corrupt (bytes flipped in the middle)', async (c) => {
    const p = Buffer.from(packed[c]!);
    for (let i = 0; i < 64; i++) p[Math.floor(p.length / 2) + i] ^= 0x5a;
    const err = await collect(decompress(chunksOf(p), c, { label: 'bad' })).catch((e) => e);
    expect(err).toBeInstanceOf(CompressionError);
    expect(err.stderrTail.length).toBeGreaterThan(0);
  });

  test.each(codecs)('%s: not compressed at all', async (c) => {
    const err = await collect(decompress(chunksOf(data), c)).catch((e) => e);
    expect(err).toBeInstanceOf(CompressionError);
  });
});

describe('process hygiene', () => {
  test('early consumer stop kills the child and reaps it', async () => {
    const data = sample(32 * 1024 * 1024, 9);
    const packed = execFileSync('zstd', ['-q', '-c'], { input: data, maxBuffer: 64 << 20 });
    const gen = decompress(chunksOf(packed, 65536), 'zst');
    const first = await gen.next();
    expect(first.done).toBe(false);
    expect(childrenNamed('zstd').length).toBe(1);
    await gen.return(undefined);
    await sleep(50);
    expect(childrenNamed('zstd')).toEqual([]);
  });

  test('break out of for-await over openArchive kills the decompressor', async () => {
    const f = path.join(dir, 'big.vma.gz');
    fs.writeFileSync(f, execFileSync('gzip', ['-c'], { input: sample(16 * 1024 * 1024, 3), maxBuffer: 64 << 20 }));
    for await (const c of openArchive(f)) {
      expect(c.length).toBeGreaterThan(0);
      break;
    }
    await sleep(50);
    expect(childrenNamed('gzip')).toEqual([]);
  });

  test('backpressure: a stalled consumer does not drain the whole input', async () => {
    let produced = 0;
    async function* endless(): AsyncGenerator<Buffer> {
      const block = crypto.randomBytes(1 << 20);
      for (;;) {
        produced += block.length;
        yield block;
      }
    }
    const gen = compress(endless(), 'lzo');
    await gen.next();
    await sleep(300);
    const seen = produced;
    expect(seen).toBeLessThan(64 << 20);
    await gen.return(undefined);
    await sleep(50);
    expect(childrenNamed('lzop')).toEqual([]);
  });

  test('abort signal kills the child and rejects with the abort reason', async () => {
    const ac = new AbortController();
    async function* slow(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 1000; i++) {
        yield crypto.randomBytes(65536);
        await sleep(5);
      }
    }
    const started = Date.now();
    setTimeout(() => ac.abort(new Error('stop now')), 100);
    await expect(collect(compress(slow(), 'zst', { signal: ac.signal }))).rejects.toThrow('stop now');
    expect(Date.now() - started).toBeLessThan(3000);
    await sleep(50);
    expect(childrenNamed('zstd')).toEqual([]);
  });

  test('an error from the input propagates and the child is gone', async () => {
    async function* failing(): AsyncGenerator<Buffer> {
      yield crypto.randomBytes(100000);
      throw new Error('source broke');
    }
    await expect(collect(compress(failing(), 'gz'))).rejects.toThrow('source broke');
    await sleep(50);
    expect(childrenNamed('pigz')).toEqual([]);
  });

  test('a missing binary says what to install', async () => {
    const old = process.env.PATH;
    process.env.PATH = dir; // no zstd here
    try {
      const err = await collect(decompress(chunksOf(Buffer.from('x')), 'zst', { label: 'a.vma.zst' })).catch((e) => e);
      expect(err).toBeInstanceOf(CompressionError);
      expect(err.message).toBe("'a.vma.zst': zstd not found - apt-get install zstd");
    } finally {
      process.env.PATH = old;
    }
  });

  test('a missing decompressor, with the output read into a pool, leaves no socket open', async () => {
    const f = path.join(dir, 'nobinary.vma.zst');
    fs.writeFileSync(f, await collect(compress(chunksOf(sample(10_000, 2)), 'zst')));
    const pipes = () => process.getActiveResourcesInfo().filter((r) => r === 'PipeWrap').length;
    const before = pipes();
    const old = process.env.PATH;
    process.env.PATH = dir; // no zstd here
    try {
      const err = await collect(openArchive(f, { chunkPool: new ChunkPool(64 * 1024) })).catch((e) => e);
      expect(err).toBeInstanceOf(CompressionError);
      expect(err.message).toBe("'nobinary.vma.zst': zstd not found - apt-get install zstd");
    } finally {
      process.env.PATH = old;
    }
    await sleep(20); // closes complete on the next turns of the event loop
    expect(pipes()).toBe(before);
  });

  test('openArchive of a missing file is an IoError naming it', async () => {
    const f = path.join(dir, 'nope.vma.zst');
    const err = await collect(openArchive(f)).catch((e) => e);
    expect(err).toBeInstanceOf(IoError);
    expect(err.message).toBe(`'${f}': no such file`);
  });

  test('openArchive rejects an unknown extension before opening anything', async () => {
    await expect(collect(openArchive(path.join(dir, 'x.vma.bz3')))).rejects.toThrow(/unknown compression/);
  });
});

describe('openArchive of a plain file through a ChunkPool', () => {
  test.each([0, 1, 4095, 4096, 3 * 4096 + 5, 40_000])('a %d-byte file comes out whole and in order, in reused buffers', async (size) => {
    const data = sample(size, size + 3);
    const f = path.join(dir, `pooled-${size}.vma`);
    fs.writeFileSync(f, data);
    const pool = new ChunkPool(4096);
    const parts: Buffer[] = [];
    const buffers = new Set<ArrayBufferLike>();
    for await (const chunk of openArchive(f, { chunkPool: pool })) {
      expect(chunk.length).toBeGreaterThan(0);
      expect(chunk.length).toBeLessThanOrEqual(4096);
      buffers.add(chunk.buffer);
      parts.push(Buffer.from(chunk)); // copy, then hand the buffer back at once
      chunk.fill(0xee);
      pool.release(chunk);
    }
    expect(Buffer.concat(parts).equals(data)).toBe(true);
    expect(pool.inUse).toBe(0); // reads issued past the end were given back too
    expect(buffers.size).toBeLessThanOrEqual(5); // four reads in flight, one being consumed
  });

  test('a consumer that keeps its chunks gets fresh buffers, never a lent one twice', async () => {
    const data = sample(50_000, 9);
    const f = path.join(dir, 'pooled-kept.vma');
    fs.writeFileSync(f, data);
    const pool = new ChunkPool(4096);
    const kept: Buffer[] = [];
    for await (const chunk of openArchive(f, { chunkPool: pool })) kept.push(chunk);
    expect(Buffer.concat(kept).equals(data)).toBe(true);
    expect(new Set(kept.map((c) => c.buffer)).size).toBe(kept.length);
  });

  test('stopping early gives back the reads still in flight', async () => {
    const f = path.join(dir, 'pooled-stop.vma');
    fs.writeFileSync(f, sample(100_000, 4));
    const pool = new ChunkPool(4096);
    for await (const chunk of openArchive(f, { chunkPool: pool })) {
      pool.release(chunk);
      break;
    }
    expect(pool.inUse).toBe(0);
  });

  test.each(codecs)("a %s archive's output is read into the pool's buffers, which go round", async (c) => {
    const data = sample(600_000, 5);
    const f = path.join(dir, `pooled.vma.${c}`);
    fs.writeFileSync(f, await collect(compress(chunksOf(data), c)));
    const pool = new ChunkPool(96 * 1024);
    const parts: Buffer[] = [];
    const buffers = new Set<ArrayBufferLike>();
    for await (const chunk of openArchive(f, { chunkPool: pool })) {
      expect(chunk.length).toBeGreaterThan(0);
      expect(chunk.buffer.byteLength).toBe(96 * 1024); // a view of a pool buffer, not a pipe chunk
      buffers.add(chunk.buffer);
      parts.push(Buffer.from(chunk));
      chunk.fill(0xee); // the consumer may scribble: the buffer is its own until released
      pool.release(chunk);
    }
    expect(Buffer.concat(parts).equals(data)).toBe(true);
    expect(pool.inUse).toBe(0);
    expect(buffers.size).toBeLessThan(parts.length); // reused, not one per chunk
  });

  test('a truncated compressed archive read into the pool still fails', async () => {
    const f = path.join(dir, 'pooled-cut.vma.zst');
    const whole = await collect(compress(chunksOf(sample(300_000, 8)), 'zst'));
    fs.writeFileSync(f, whole.subarray(0, whole.length - 1000));
    const pool = new ChunkPool(64 * 1024);
    const read = async () => {
      for await (const chunk of openArchive(f, { chunkPool: pool })) pool.release(chunk);
    };
    await expect(read()).rejects.toThrow(CompressionError);
    expect(pool.inUse).toBe(0);
  });

  test('where no socket can be made, the output comes through the pipe', async () => {
    const data = sample(200_000, 6);
    const f = path.join(dir, 'pooled-nosocket.vma.zst');
    fs.writeFileSync(f, await collect(compress(chunksOf(data), 'zst')));
    const spy = jest.spyOn(pooledSocket, 'openPooledSocket').mockRejectedValueOnce(new Error('listen EINVAL'));
    try {
      const pool = new ChunkPool(64 * 1024);
      const kept: Buffer[] = [];
      for await (const chunk of openArchive(f, { chunkPool: pool })) kept.push(chunk);
      expect(spy).toHaveBeenCalledTimes(1);
      expect(Buffer.concat(kept).equals(data)).toBe(true);
      expect(pool.inUse).toBe(0); // nothing lent: the chunks kept are the pipe's own
    } finally {
      spy.mockRestore();
    }
  });
});

describe('readFd with a handle whose reads fail or come up short', () => {
  /** A FileHandle stand-in over `data`: `short` caps the read at that offset, `fail` rejects it (after a delay). */
  function fakeHandle(data: Buffer, opts: { short?: Map<number, number>; fail?: Set<number> } = {}) {
    const offsets: (number | null)[] = [];
    let filePos = 0; // for reads without a position, as read(2) advances it
    const fh = {
      stat: async () => ({ isFile: () => true }),
      read: async (buf: Buffer, off: number, len: number, at: number | null) => {
        offsets.push(at);
        await sleep(5);
        const pos = at ?? filePos;
        if (opts.fail?.has(pos)) throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
        const n = Math.min(len, opts.short?.get(pos) ?? len, Math.max(0, data.length - pos));
        data.copy(buf, off, pos, pos + n);
        if (at === null) filePos += n;
        return { bytesRead: n, buffer: buf };
      },
    };
    return { fh: fh as unknown as fs.promises.FileHandle, offsets };
  }

  test('a short read in the middle of the file neither skips nor repeats a byte', async () => {
    const data = sample(40_000, 12);
    const { fh } = fakeHandle(data, { short: new Map([[4096, 100], [8292, 7]]) });
    const pool = new ChunkPool(4096);
    const parts: Buffer[] = [];
    for await (const c of readFd(fh, 'x.vma', undefined, pool)) {
      parts.push(Buffer.from(c));
      pool.release(c);
    }
    expect(Buffer.concat(parts).equals(data)).toBe(true);
    expect(pool.inUse).toBe(0);
  });

  test('a read ahead that fails before it is awaited becomes an IoError in order, not an unhandled rejection', async () => {
    const data = sample(40_000, 13);
    const { fh } = fakeHandle(data, { fail: new Set([8192, 12288]) });
    const pool = new ChunkPool(4096);
    const unhandled: unknown[] = [];
    const onUnhandled = (r: unknown) => unhandled.push(r);
    process.on('unhandledRejection', onUnhandled);
    try {
      const got: Buffer[] = [];
      const err = await (async () => {
        for await (const c of readFd(fh, 'x.vma', undefined, pool)) {
          got.push(Buffer.from(c));
          pool.release(c);
          await sleep(30); // the reads ahead settle (and fail) while the consumer works
        }
      })().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(IoError);
      expect((err as Error).message).toBe("'x.vma': read at offset 8192 failed - EIO: i/o error, read");
      expect(Buffer.concat(got).equals(data.subarray(0, 8192))).toBe(true);
      await sleep(20);
      expect(unhandled).toEqual([]);
      expect(pool.inUse).toBe(0);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  test('without a pool, reads are sequential (no position), so pipes and devices work', async () => {
    const data = sample(10_000, 14);
    const { fh, offsets } = fakeHandle(data);
    const got = await collect(readFd(fh, 'x.vma'));
    expect(got.equals(data.subarray(0, data.length))).toBe(true);
    expect(offsets.every((o) => o === null)).toBe(true);
  });

  test('openArchive reads a FIFO named .vma through a pool (it cannot seek)', async () => {
    const data = sample(300_000, 15);
    const src = path.join(dir, 'fifo-src.bin');
    fs.writeFileSync(src, data);
    const fifo = path.join(dir, 'fifo.vma');
    execFileSync('mkfifo', [fifo]);
    const writer = spawn('sh', ['-c', 'cat "$1" > "$2"', 'sh', src, fifo], { stdio: 'ignore' });
    const writerDone = new Promise((r) => writer.once('close', r));
    const pool = new ChunkPool(4096);
    const parts: Buffer[] = [];
    for await (const c of openArchive(fifo, { chunkPool: pool })) parts.push(c);
    expect(Buffer.concat(parts).equals(data)).toBe(true);
    await writerDone;
  });
});
