import { ClusterSet } from '../../src/vma/clusters';

describe('ClusterSet', () => {
  test('add reports duplicates; count and has follow', () => {
    const s = new ClusterSet(10);
    expect(s.add(3)).toBe(true);
    expect(s.add(3)).toBe(false);
    expect(s.add(0)).toBe(true);
    expect(s.count).toBe(2);
    expect(s.has(3)).toBe(true);
    expect(s.has(4)).toBe(false);
  });

  test('firstMissing finds the lowest gap, -1 when complete', () => {
    const total = 3 * 65536 + 13; // three pages and a partial byte
    const s = new ClusterSet(total);
    expect(s.firstMissing()).toBe(0);
    for (let c = 0; c < total; c++) if (c !== 65536 + 77 && c !== total - 1) s.add(c);
    expect(s.firstMissing()).toBe(65536 + 77);
    s.add(65536 + 77);
    expect(s.firstMissing()).toBe(total - 1);
    s.add(total - 1);
    expect(s.firstMissing()).toBe(-1);
    expect(s.count).toBe(total);
  });

  test('a missing whole page is reported at its start', () => {
    const s = new ClusterSet(65536 * 2 + 1);
    for (let c = 0; c < 65536; c++) s.add(c);
    s.add(65536 * 2);
    expect(s.firstMissing()).toBe(65536);
  });

  test('a 256 TiB device costs memory only for what is seen', () => {
    const s = new ClusterSet(2 ** 32);
    expect(s.add(2 ** 32 - 1)).toBe(true);
    expect(s.has(2 ** 32 - 1)).toBe(true);
    expect(s.firstMissing()).toBe(0);
  });
});
