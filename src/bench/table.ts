/**
 * Table printing and number helpers shared by the `npm run bench` sections (codec, store); the
 * layout itself is src/util/table.ts.
 */

import { formatTable, type Table } from '../util/table';

/** Print the table to stdout. */
export function printTable(t: Table): void {
  process.stdout.write(formatTable(t));
}

/** `x` with `digits` decimals, or '-' when it is not a finite number. */
export function fixed(x: number | undefined, digits: number): string {
  return x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

/** Decimal gigabytes per second of `bytes` moved in `seconds`. */
export function gbPerSecond(bytes: number, seconds: number): number {
  return seconds > 0 ? bytes / seconds / 1e9 : NaN;
}

/** A ratio as a percentage string, e.g. 0.912 -> '91 %'. */
export function percent(ratio: number | undefined): string {
  return ratio === undefined || !Number.isFinite(ratio) ? '-' : `${Math.round(ratio * 100)} %`;
}
