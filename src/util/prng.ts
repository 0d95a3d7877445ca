/**
 * mulberry32: a tiny seeded PRNG returning uint32 values, for reproducible generated test data
 * (the demo's guest, test fixtures). Not for anything secret.
 */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Uniform floats in [0, 1) drawn from a uint32 generator (sharing its stream). */
export function floats(next: () => number): () => number {
  return () => next() / 2 ** 32;
}
