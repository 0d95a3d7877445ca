/** Human-readable sizes for messages and tables. Pure. */

/** Binary units as PVE shows them ("1.50 GiB"); `digits` decimals above bytes. */
export function humanBytes(n: number, digits = 2): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(digits)} ${units[i]}`;
}

const UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** Parses a size like `4G`, `512M`, `1.5GiB` or `1073741824` (binary units); undefined when invalid. */
export function parseSize(s: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(s);
  if (!m) return undefined;
  const n = Math.round(Number(m[1]) * UNITS[m[2]!.toUpperCase()]!);
  return n > 0 ? n : undefined;
}
