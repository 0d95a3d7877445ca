import { timestampFields, timestampProblem } from '../../src/util/timestamp';
import { ingestTarget } from '../../src/ingest/ingest';

describe('backup timestamps', () => {
  test('split into wall-time fields', () => {
    expect(timestampFields('2026_02_28-23_59_59')).toEqual({ year: 2026, month: 2, day: 28, hour: 23, minute: 59, second: 59 });
    expect(timestampProblem('2024_02_29-00_00_00')).toBeUndefined();
  });

  test.each([
    ['2026_1_01-00_00_00', /expected YYYY_MM_DD-HH_MM_SS/],
    ['2026_13_01-00_00_00', /month 13/],
    ['2026_02_29-00_00_00', /day 29 out of range 1..28/],
    ['2026_01_01-24_00_00', /hour 24/],
    ['1969_12_31-23_59_59', /year 1969 is before 1970/],
  ])('%s is refused', (ts, why) => {
    expect(timestampProblem(ts)).toMatch(why);
  });

  test('ingest --time takes the same check as archive names', () => {
    expect(() => ingestTarget('/x/odd-name.vma', { vmid: 101, timestamp: '2026_13_01-00_00_00' })).toThrow(/time '2026_13_01-00_00_00' is not a backup time - month 13/);
    expect(ingestTarget('/x/odd-name.vma', { vmid: 101, timestamp: '2026_12_01-00_00_00' }).timestamp).toBe('2026_12_01-00_00_00');
    // a time before 1970 is refused up front, naming the file, not after the data pass
    expect(() => ingestTarget('/x/vzdump-qemu-100-1969_12_31-23_59_59.vma')).toThrow(
      "'vzdump-qemu-100-1969_12_31-23_59_59.vma': invalid timestamp '1969_12_31-23_59_59' - year 1969 is before 1970",
    );
    expect(() => ingestTarget('/x/vzdump-qemu-100-2026_02_30-02_00_00.vma.zst')).toThrow(/invalid timestamp '2026_02_30-02_00_00' - day 30 out of range 1..28$/);
  });
});
