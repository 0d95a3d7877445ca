/**
 * A tiny aligned-table printer shared by the `npm run bench` sections (codec, store).
 *
 * Owns only layout: a title, a header row, a rule, the rows and footer lines, with every column
 * padded to its widest cell; numeric columns (`align: 'right'`) are right-aligned. Leaves number
 * formatting to the caller, except for the small helpers below. Guarantees: pure string
 * building, no I/O; `formatTable` output ends with a newline.
 */

export interface Column {
  title: string;
  /** default 'left'; use 'right' for numbers */
  align?: 'left' | 'right';
}

export interface Table {
  title?: string;
  columns: Column[];
  /** one string per column; missing cells print empty */
  rows: string[][];
  /** printed under the table, one line each */
  footer?: string[];
}

/** The table as text: title, header, rule, rows, footer. */
export function formatTable(t: Table): string {
  const widths = t.columns.map((c, i) => Math.max(c.title.length, ...t.rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    t.columns
      .map((c, i) => {
        const s = cells[i] ?? '';
        return c.align === 'right' ? s.padStart(widths[i]!) : s.padEnd(widths[i]!);
      })
      .join('  ')
      .trimEnd();
  const out: string[] = [];
  if (t.title) out.push(t.title);
  out.push(line(t.columns.map((c) => c.title)));
  out.push(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of t.rows) out.push(line(r));
  for (const f of t.footer ?? []) out.push(f);
  return out.join('\n') + '\n';
}

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
