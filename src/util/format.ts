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
