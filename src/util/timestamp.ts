/**
 * The backup timestamp of vzdump archive names and of vzdump-zfs snapshot names:
 * `YYYY_MM_DD-HH_MM_SS`, wall time of the PVE node. One parser for every layer that meets it
 * (archive names, ingest overrides, snapshot names, CLI arguments).
 */
import type { WallTime } from './localtime';

const TIMESTAMP_RE = /^(\d{4})_(\d{2})_(\d{2})-(\d{2})_(\d{2})_(\d{2})$/;

/** Splits and range-checks a timestamp (Perl's timelocal dies on the same out-of-range fields); a string says what is wrong. */
export function timestampFields(ts: string): WallTime | string {
  const m = TIMESTAMP_RE.exec(ts);
  if (!m) return `expected YYYY_MM_DD-HH_MM_SS`;
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  // backup times are epoch seconds, never negative (vzdump has no archives from before 1970)
  if (year < 1970) return `year ${year} is before 1970`;
  if (month < 1 || month > 12) return `month ${month} out of range 1..12`;
  const dim = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (day < 1 || day > dim) return `day ${day} out of range 1..${dim}`;
  if (hour > 23) return `hour ${hour} out of range 0..23`;
  if (minute > 59) return `minute ${minute} out of range 0..59`;
  if (second > 59) return `second ${second} out of range 0..59`;
  return { year, month, day, hour, minute, second };
}

/** True when `ts` has the timestamp's shape, whether or not its fields are in range. */
export function hasTimestampShape(ts: string): boolean {
  return TIMESTAMP_RE.test(ts);
}

/** What is wrong with `ts` as a timestamp, or undefined when it is a valid one. */
export function timestampProblem(ts: string): string | undefined {
  const f = timestampFields(ts);
  return typeof f === 'string' ? f : undefined;
}
