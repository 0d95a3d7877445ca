/** Tests src/util/prng.ts: the seeded generator the demo, the bench and test fixtures draw from. */
import { floats, prng } from '../../src/util/prng';

test('a seed gives the same uint32 sequence every time, another seed another one', () => {
  const a = prng(42);
  const b = prng(42);
  const c = prng(43);
  const seqA = Array.from({ length: 1000 }, () => a());
  expect(Array.from({ length: 1000 }, () => b())).toEqual(seqA);
  expect(Array.from({ length: 1000 }, () => c())).not.toEqual(seqA);
  expect(seqA.every((v) => Number.isInteger(v) && v >= 0 && v < 2 ** 32)).toBe(true);
  expect(new Set(seqA).size).toBeGreaterThan(990);
});

test('floats lie in [0, 1) and follow the stream they wrap', () => {
  const ints = prng(7);
  const fl = floats(prng(7));
  for (let i = 0; i < 1000; i++) {
    const f = fl();
    expect(f).toBeGreaterThanOrEqual(0);
    expect(f).toBeLessThan(1);
    expect(Math.floor(f * 2 ** 32)).toBe(ints());
  }
});
