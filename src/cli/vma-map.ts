/**
 * The device map of `vma extract -r MAP`: the lines `qmrestore` writes to a FIFO to tell PVE's vma
 * where each disk of the archive goes (vma.c in pve-qemu's vma patch; qemu-server's
 * restore_vma_archive writes them).
 *
 *   [format=F:][throttling.bps=N:][throttling.group=G:][cache=C:]0|1:DEVNAME=PATH
 *   skip=DEVNAME
 *   done
 *
 * `1:` means the target is not known to read as zeros, so every block is written, zeros too;
 * `0:` means it does (a new sparse volume), so zero blocks are left out. The map ends at `done`, an
 * empty line or the end of input. Pure: parsing only; extract opens and writes the targets.
 */
import { UsageError } from '../errors';

export interface MapTarget {
  devname: string;
  path: string;
  /** the target does not read as zeros: write zero blocks too */
  writeZero: boolean;
  format?: string;
  /** throttling.bps, throttling.group and cache are accepted and not applied (no QEMU block layer here) */
  options: Record<string, string>;
}

export interface MapSkip {
  devname: string;
  skip: true;
}

export type MapEntry = MapTarget | MapSkip;

const OPTIONS = ['format', 'throttling.bps', 'throttling.group', 'cache'];

/** Parses one map line (without its newline); undefined for the line that ends the map. */
export function parseMapLine(line: string, where: string): MapEntry | undefined {
  if (line === '' || line === 'done') return undefined;
  const bad = (what: string) => new UsageError(`${where}: read map failed - ${what} ('${line}')`);
  if (line.startsWith('skip')) {
    if (line[4] !== '=' || line.length < 6) throw bad("option 'skip' has no value");
    return { devname: line.slice(5), skip: true };
  }
  let rest = line;
  const options: Record<string, string> = {};
  for (;;) {
    const name = OPTIONS.find((o) => rest.startsWith(`${o}=`));
    if (name === undefined) break;
    if (name in options) throw bad(`duplicate value for option '${name}'`);
    const colon = rest.indexOf(':', name.length + 1);
    if (colon < 0) throw bad(`option '${name}' not terminated`);
    options[name] = rest.slice(name.length + 1, colon);
    rest = rest.slice(colon + 1);
  }
  if (options['throttling.bps'] !== undefined && !/^\d+$/.test(options['throttling.bps'])) throw bad(`throttling.bps '${options['throttling.bps']}' is not a number`);
  if (!rest.startsWith('0:') && !rest.startsWith('1:')) throw bad('parse error');
  const writeZero = rest[0] === '1';
  rest = rest.slice(2);
  const eq = rest.indexOf('=');
  if (eq < 0) throw bad('no dev name specified');
  const { format, ...others } = options;
  const target: MapTarget = { devname: rest.slice(0, eq), path: rest.slice(eq + 1), writeZero, options: others };
  if (format !== undefined) target.format = format;
  return target;
}

/**
 * Reads map lines up to the end line (`done`, an empty line or the end of input) and no further
 * (a FIFO's writer may keep it open); a later line for the same device wins, as in vma.c.
 */
export async function parseMap(lines: AsyncIterable<string> | Iterable<string>, where: string): Promise<Map<string, MapEntry>> {
  const map = new Map<string, MapEntry>();
  for await (const line of lines) {
    const e = parseMapLine(line, where);
    if (e === undefined) break;
    map.set(e.devname, e);
  }
  return map;
}
