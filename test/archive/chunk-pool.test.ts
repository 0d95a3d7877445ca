import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { ChunkPool, POOL_CHUNK } from '../../src/archive/chunk-pool';

describe('ChunkPool', () => {
  test('lends buffers of its chunk size and reuses a released one', () => {
    const pool = new ChunkPool(1000);
    const a = pool.get();
    expect(a.length).toBe(1000);
    expect(pool.inUse).toBe(1);
    pool.release(a);
    expect(pool.inUse).toBe(0);
    expect(pool.get()).toBe(a);
    expect(new ChunkPool().chunkSize).toBe(POOL_CHUNK);
  });

  test('a released view gives back its whole buffer', () => {
    const pool = new ChunkPool(1000);
    const a = pool.get();
    pool.release(a.subarray(300, 700));
    const b = pool.get();
    expect(b).toBe(a);
    expect(b.length).toBe(1000);
  });

  test('foreign buffers and second releases are ignored, so no buffer is lent twice', () => {
    const pool = new ChunkPool(1000);
    const a = pool.get();
    pool.release(Buffer.alloc(1000));
    expect(pool.inUse).toBe(1);
    pool.release(a);
    pool.release(a);
    const b = pool.get();
    const c = pool.get();
    expect(b).toBe(a);
    expect(c).not.toBe(a);
  });

  test('keeps at most maxFree idle buffers', () => {
    const pool = new ChunkPool(100, 2);
    const lent = [pool.get(), pool.get(), pool.get(), pool.get()];
    for (const b of lent) pool.release(b);
    const again = [pool.get(), pool.get(), pool.get()];
    expect(again.filter((b) => lent.includes(b)).length).toBe(2);
  });
});

describe('ChunkPool without releases', () => {
  test('holds no lent buffer once the consumer dropped it (no leak when release is never called)', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const pool = new ChunkPool(1 << 20);
    const refs = Array.from({ length: 8 }, () => new WeakRef(pool.get().buffer));
    await new Promise((r) => setImmediate(r)); // WeakRef targets stay alive to the end of this job
    gc();
    expect(refs.filter((r) => r.deref() !== undefined)).toHaveLength(0);
    expect(pool.inUse).toBe(8);
  });
});
