/**
 * Aligned text tables for everything that prints one: the CLI's listings, the demo's savings
 * table and the benchmark sections.
 *
 * Owns only layout: an optional title, a header row, an optional rule, the rows and footer lines,
 * with every column padded to its widest cell; `align: 'right'` columns are right-aligned. Leaves
 * number formatting to the caller. Pure string building; output ends with a newline.
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
  /** a rule of dashes under the header (default true) */
  rule?: boolean;
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
  if (t.rule !== false) out.push(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of t.rows) out.push(line(r));
  for (const f of t.footer ?? []) out.push(f);
  return out.join('\n') + '\n';
}
