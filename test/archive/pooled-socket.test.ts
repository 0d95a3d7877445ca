import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ChunkPool } from '../../src/archive/chunk-pool';
import { openPooledSocket } from '../../src/archive/pooled-socket';

let dir: string;
let file: string;
let data: Buffer;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vz-pooled-'));
  file = path.join(dir, 'data');
  data = crypto.randomBytes(6 << 20);
  fs.writeFileSync(file, data);
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** `cat file` with its stdout on a pooled socket; resolves with the child's exit code or signal */
async function catInto(pool: ChunkPool) {
  const ps = await openPooledSocket(pool);
  const child = spawn('cat', [file], { stdio: ['ignore', ps.childEnd, 'inherit'] });
  ps.childEnd.destroy();
  const exited = new Promise<number | string | null>((resolve) => child.once('close', (code, sig) => resolve(code ?? sig)));
  return { ps, exited };
}

describe('a child process whose stdout is read into a ChunkPool', () => {
  test('the output arrives whole and in order, in views of the pool buffers, which go round', async () => {
    const pool = new ChunkPool(1 << 20);
    const { ps, exited } = await catInto(pool);
    const parts: Buffer[] = [];
    const buffers = new Set<ArrayBufferLike>();
    for await (const chunk of ps.chunks) {
      expect(chunk.buffer.byteLength).toBe(1 << 20);
      buffers.add(chunk.buffer);
      parts.push(Buffer.from(chunk));
      chunk.fill(0); // the chunk is the consumer's until released
      pool.release(chunk);
    }
    expect(Buffer.concat(parts).equals(data)).toBe(true);
    expect(await exited).toBe(0);
    expect(pool.inUse).toBe(0);
    expect(buffers.size).toBeLessThanOrEqual(4); // reused: one read into, one or two waiting, one held
  });

  test('a slow consumer stops the reading, and it goes on when the consumer catches up', async () => {
    const pool = new ChunkPool(256 * 1024);
    const { ps, exited } = await catInto(pool);
    const parts: Buffer[] = [];
    let most = 0;
    for await (const chunk of ps.chunks) {
      most = Math.max(most, pool.inUse);
      parts.push(Buffer.from(chunk));
      await sleep(5); // cat could fill the queue many times over meanwhile
      pool.release(chunk);
    }
    expect(Buffer.concat(parts).equals(data)).toBe(true);
    expect(await exited).toBe(0);
    expect(most).toBeLessThanOrEqual(3); // held + at most one waiting + the one being read into
  });

  test('a consumer that stops early leaves no buffer lent and the child sees a closed pipe', async () => {
    const pool = new ChunkPool(256 * 1024);
    const { ps, exited } = await catInto(pool);
    for await (const chunk of ps.chunks) {
      pool.release(chunk);
      break;
    }
    expect(pool.inUse).toBe(0);
    expect(await exited).not.toBe(0); // cat: write error (EPIPE) on the closed socket
  });
});
