/**
 * The statistics `vma verify -v`, `vma extract -v` and `vma create -v` print, counted the way
 * PVE's vma-reader.c and vma.c count them, so the text matches the reference tool's line for line.
 *
 * Pure: callers feed clusters and print the returned lines; the clock is a parameter.
 *
 * Reading (vma-reader.c restore_extent):
 * - progress: `progress N% (read X bytes, duration S sec)` each time the integer percentage of
 *   clusters read changes. The total is Σ floor(size / 64 KiB) over the devices the tool reads
 *   into (verify: all devices, vmstate included; extract: the disks, also those `-d` leaves out,
 *   not vmstate), while every
 *   cluster read counts, so the last lines can pass 100 %. No total, no progress lines (the
 *   reference divides by zero there).
 * - sparse bytes: the 4 KiB blocks absent from a cluster's mask, clipped at the device's last
 *   whole 512-byte sector (vmstate is not clipped); the part of those in clusters that do have
 *   data is the "space reduction due to 4K zero blocks".
 */
import { BLOCK_SIZE, BLOCKS_PER_CLUSTER, CLUSTER_SIZE } from '../vma/constants';

const SECTOR = 512;
const SECTORS_PER_BLOCK = BLOCK_SIZE / SECTOR;

export interface ReportDevice {
  id: number;
  name: string;
  size: number;
}

/** Seconds since the epoch, whole, as C's time(). */
const wallSeconds = () => Math.floor(Date.now() / 1000);

export class ReadReport {
  /** clusters counted by the reference's progress percentage */
  readonly totalClusters: number;
  clustersRead = 0;
  private zeroBytes = 0;
  private partialZeroBytes = 0;
  private lastPercent = 0;
  private readonly start: number;
  /** per device id: the end of the device in sectors (Infinity for vmstate) */
  private readonly maxSector: number[] = [];

  /** `counted`: the devices the tool reads into (their clusters make up 100 %). */
  constructor(devices: readonly ReportDevice[], counted: (d: ReportDevice) => boolean, private readonly now: () => number = wallSeconds) {
    this.start = now();
    let total = 0;
    for (const d of devices) {
      this.maxSector[d.id] = d.name === 'vmstate' ? Infinity : Math.floor(d.size / SECTOR);
      if (counted(d)) total += Math.floor(d.size / CLUSTER_SIZE);
    }
    this.totalClusters = total;
  }

  /** Counts one cluster; returns the progress line to print when the percentage changed. */
  cluster(devId: number, cluster: number, mask: number): string | undefined {
    this.clustersRead++;
    if (mask !== 0xffff) {
      const max = this.maxSector[devId] ?? Infinity;
      for (let j = 0; j < BLOCKS_PER_CLUSTER; j++) {
        if (mask & (1 << j)) continue;
        const first = (cluster * CLUSTER_SIZE + j * BLOCK_SIZE) / SECTOR;
        const end = Math.min(first + SECTORS_PER_BLOCK, max);
        if (end <= first) continue;
        const bytes = (end - first) * SECTOR;
        this.zeroBytes += bytes;
        if (mask !== 0) this.partialZeroBytes += bytes;
      }
    }
    if (this.totalClusters === 0) return undefined;
    const percent = Math.floor((this.clustersRead * 100) / this.totalClusters);
    if (percent === this.lastPercent) return undefined;
    this.lastPercent = percent;
    return `progress ${percent}% (read ${this.clustersRead * CLUSTER_SIZE} bytes, duration ${this.now() - this.start} sec)\n`;
  }

  /** The lines printed after the last cluster. */
  summary(): string {
    if (this.clustersRead === 0) return 'vma archive contains no image data\n';
    const bytes = this.clustersRead * CLUSTER_SIZE;
    let s = `total bytes read ${bytes}, sparse bytes ${this.zeroBytes} (${formatG((100 * this.zeroBytes) / bytes)}%)\n`;
    const dataSize = bytes - this.zeroBytes;
    if (dataSize !== 0) s += `space reduction due to 4K zero blocks ${formatG((100 * this.partialZeroBytes) / dataSize)}%\n`;
    return s;
  }
}

/**
 * `vma create -v`: `progress N% TRANSFERRED/TOTAL ZERO_BYTES` on each change of the percentage,
 * then one `image …` line per image.
 * The reference polls its writer from the main loop, so its lines lag behind by a few clusters
 * and, with several disks written at once, mix their counts; these are exact, in image order.
 */
export class CreateReport {
  private readonly total: number;
  private transferred = 0;
  /** all-zero 4 KiB blocks in bytes: per image, and summed */
  private readonly zeros: number[];
  private zeroBytes = 0;
  private lastPercent = -1;

  constructor(private readonly images: readonly { name: string; size: number }[]) {
    this.total = images.reduce((n, d) => n + d.size, 0);
    this.zeros = images.map(() => 0);
  }

  /** The line before the first cluster (the reference polls once before anything is transferred). */
  begin(): string | undefined {
    return this.progress();
  }

  /** image `index` (0-based); `length`: the cluster's bytes inside the image; `zeros`: its all-zero 4 KiB blocks in bytes. */
  cluster(index: number, length: number, zeros: number): string | undefined {
    this.transferred += length;
    this.zeros[index]! += zeros;
    this.zeroBytes += zeros;
    return this.progress();
  }

  /** The `image NAME: size= zeros= saved=` lines printed at the end. */
  imageLines(): string {
    return this.images.map((d, i) => `image ${d.name}: size=${d.size} zeros=${this.zeros[i]} saved=${d.size - this.zeros[i]!}\n`).join('');
  }

  private progress(): string | undefined {
    if (this.total === 0) return undefined;
    const percent = Math.floor((this.transferred * 100) / this.total);
    if (percent === this.lastPercent) return undefined;
    this.lastPercent = percent;
    return `progress ${percent}% ${this.transferred}/${this.total} ${this.zeroBytes}\n`;
  }
}

/**
 * printf("%.Pg", x) for a finite x ≥ 0, as glibc prints it: the exact binary value rounded to P
 * significant digits (ties to even), fixed notation unless the exponent is < -4 or ≥ P,
 * trailing zeros removed, at least two exponent digits.
 */
export function formatG(x: number, precision = 3): string {
  if (!Number.isFinite(x) || x < 0) throw new RangeError(`formatG: ${x} is not a finite number ≥ 0`);
  if (x === 0) return '0';
  let { digits, exp } = exactDecimal(x); // x = 0.<digits> × 10^exp, digits[0] ≠ '0'
  if (digits.length > precision) {
    const kept = BigInt(digits.slice(0, precision));
    const rest = digits.slice(precision);
    const half = rest[0]! > '5' || (rest[0] === '5' && /[1-9]/.test(rest.slice(1)));
    const tie = rest[0] === '5' && !/[1-9]/.test(rest.slice(1));
    const up = half || (tie && kept % 2n === 1n);
    let r = (up ? kept + 1n : kept).toString();
    if (r.length > precision) {
      r = r.slice(0, precision); // 999… rounded up to 1000…
      exp++;
    }
    digits = r;
  }
  digits = digits.replace(/0+$/, '');
  const e = exp - 1; // x = d.ddd × 10^e
  if (e < -4 || e >= precision) {
    const mantissa = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${mantissa}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  }
  if (e < 0) return `0.${'0'.repeat(-e - 1)}${digits}`;
  const int = digits.slice(0, e + 1).padEnd(e + 1, '0');
  const frac = digits.slice(e + 1);
  return frac ? `${int}.${frac}` : int;
}

/** The exact decimal expansion of a positive finite double: 0.<digits> × 10^exp. */
function exactDecimal(x: number): { digits: string; exp: number } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const biased = Number((bits >> 52n) & 0x7ffn);
  const fraction = bits & ((1n << 52n) - 1n);
  const mantissa = biased === 0 ? fraction : fraction | (1n << 52n);
  const pow2 = (biased === 0 ? 1 : biased) - 1075; // x = mantissa × 2^pow2
  let int: bigint;
  let scale: number; // x = int × 10^-scale
  if (pow2 >= 0) {
    int = mantissa << BigInt(pow2);
    scale = 0;
  } else {
    int = mantissa * 5n ** BigInt(-pow2); // m / 2^k = m × 5^k / 10^k
    scale = -pow2;
  }
  const all = int.toString();
  return { digits: all.replace(/0+$/, ''), exp: all.length - scale };
}
