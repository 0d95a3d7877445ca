/**
 * vzdump archive file names, parsed and built exactly as PVE does (pve-integration.md §6.1,
 * vma-format.md §7; pve-storage `archive_info`).
 *
 * Owns: recognising `vzdump-<type>-….{vma,tar,tgz}[.gz|.lzo|.zst]`, the "standard name" with vmid
 * and local-time timestamp, the `.log`/`.notes` side-file names, and the compression implied by an
 * output file name. Leaves time-zone arithmetic to src/util/localtime.ts and compression itself to
 * ./compression.ts.
 * Guarantees: pure (no I/O); a name PVE would not list as a backup (including vzdump's `*.dat`
 * temporary files and `*.tmp` directories) throws ArchiveNameError. Deliberate deviation: `.bz2`,
 * which PVE only accepts on restore and vzdump never writes, is rejected too.
 */
import * as path from 'node:path';
import { ArchiveNameError } from '../errors';
import { localParts, timelocal } from '../util/localtime';
import { timestampFields } from '../util/timestamp';

export type Compression = 'none' | 'zst' | 'lzo' | 'gz';

export interface ArchiveName {
  /** basename */
  fileName: string;
  vmtype: 'qemu' | 'lxc' | 'openvz';
  /** `tgz` counts as tar + gz */
  format: 'vma' | 'tar';
  compression: Compression;
  /** the extension as PVE shows it in `format`, e.g. `vma.zst`, `tgz` */
  ext: string;
  /** standard names only */
  vmid?: number;
  /** `YYYY_MM_DD-HH_MM_SS`, exactly as in the name (standard names only; node local time) */
  timestamp?: string;
  standard: boolean;
}

/** pve-storage `archive_info` + `$BACKUP_EXT_RE_2` (COMPRESSOR_RE = gz|lzo|zst|bz2). */
const ARCHIVE_RE = /^vzdump-(lxc|openvz|qemu)-.+\.(tgz|(?:tar|vma)(?:\.(gz|lzo|zst|bz2))?)$/;
const COMPRESSION_EXT: Record<Exclude<Compression, 'none'>, string> = { zst: '.zst', lzo: '.lzo', gz: '.gz' };

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Parse a vzdump archive name (a path is accepted; only its basename counts, as in PVE).
 * Throws ArchiveNameError for anything that is not a finished vzdump archive.
 */
export function parseArchiveName(fileName: string): ArchiveName {
  const base = path.basename(fileName);
  if (/^vzdump-.*\.(dat|tmp)$/.test(base)) {
    throw new ArchiveNameError(`'${base}': temporary file of a running vzdump backup, not an archive`, base);
  }
  const m = ARCHIVE_RE.exec(base);
  if (!m) {
    throw new ArchiveNameError(
      `'${base}': not a vzdump archive name - expected vzdump-{qemu,lxc,openvz}-….{vma,tar}[.zst|.lzo|.gz] or .tgz`,
      base,
    );
  }
  const vmtype = m[1] as ArchiveName['vmtype'];
  const ext = m[2]!;
  const comp = m[3];
  if (comp === 'bz2') {
    throw new ArchiveNameError(`'${base}': bz2 compression is not supported (vzdump never writes it; PVE reads it on restore only)`, base);
  }
  const format: ArchiveName['format'] = ext === 'tgz' || ext.startsWith('tar') ? 'tar' : 'vma';
  const compression: Compression = ext === 'tgz' ? 'gz' : ((comp as Compression | undefined) ?? 'none');

  const std = new RegExp(`^vzdump-${vmtype}-([1-9][0-9]{2,8})-(\\d{4}_\\d{2}_\\d{2}-\\d{2}_\\d{2}_\\d{2})\\.${escapeRe(ext)}$`).exec(base);
  if (!std) return { fileName: base, vmtype, format, compression, ext, standard: false };
  const timestamp = std[2]!;
  const fields = timestampFields(timestamp);
  if (typeof fields === 'string') {
    throw new ArchiveNameError(`'${base}': invalid timestamp '${timestamp}' - ${fields}`, base, { badTimestamp: timestamp });
  }
  return { fileName: base, vmtype, format, compression, ext, vmid: Number(std[1]), timestamp, standard: true };
}

/** True when `fileName` (a base name) ends like a VMA archive: `.vma`, `.vma.zst`, `.vma.lzo`, `.vma.gz`, with something before it. */
export function isVmaFileName(fileName: string): boolean {
  return /.\.vma(\.(zst|lzo|gz))?$/.test(fileName);
}

/**
 * The compression of a file that must be named as a VMA archive (`.vma`, `.vma.zst`, `.vma.lzo`,
 * `.vma.gz`): ingest under a non-vzdump name, restore's output. ArchiveNameError otherwise.
 */
export function vmaCompressionFromFileName(fileName: string): Compression {
  const compression = compressionFromFileName(fileName); // says what is wrong with .bz2 and unknown extensions
  const base = path.basename(fileName);
  if (!isVmaFileName(base)) throw new ArchiveNameError(`'${fileName}': not a VMA archive name - expected .vma, .vma.zst, .vma.lzo or .vma.gz`, base);
  return compression;
}

/**
 * The compression implied by an output or input file name for `vma create`/`vma list` and
 * restore targets: `.vma` (or `-` for stdin/stdout) = none, `.zst`, `.lzo`, `.gz`.
 */
export function compressionFromFileName(fileName: string): Compression {
  if (fileName === '-') return 'none';
  const base = path.basename(fileName);
  const ext = path.extname(base).toLowerCase();
  switch (ext) {
    case '.vma':
      return 'none';
    case '.zst':
      return 'zst';
    case '.lzo':
      return 'lzo';
    case '.gz':
      return 'gz';
    case '.bz2':
      throw new ArchiveNameError(`'${base}': bz2 compression is not supported - use .zst, .lzo or .gz`, base);
    default:
      throw new ArchiveNameError(`'${base}': unknown compression '${ext || '(none)'}' - expected .vma, .vma.zst, .vma.lzo or .vma.gz`, base);
  }
}

/** `vzdump-qemu-<vmid>-<timestamp>.vma[.zst|.lzo|.gz]`, the name vzdump gives a VM backup. */
export function archiveFileName(a: { vmtype: 'qemu'; vmid: number; timestamp: string; compression: Compression }): string {
  const name = `vzdump-${a.vmtype}-${a.vmid}-${a.timestamp}.vma${a.compression === 'none' ? '' : COMPRESSION_EXT[a.compression]}`;
  if (!Number.isInteger(a.vmid) || a.vmid < 100 || a.vmid > 999999999) {
    throw new ArchiveNameError(`'${name}': invalid vmid ${a.vmid} - expected 100..999999999`, name);
  }
  const fields = timestampFields(a.timestamp);
  if (typeof fields === 'string') throw new ArchiveNameError(`'${name}': invalid timestamp '${a.timestamp}' - ${fields}`, name);
  if (!(a.compression in COMPRESSION_EXT) && a.compression !== 'none') {
    throw new ArchiveNameError(`'${name}': unknown compression '${String(a.compression)}'`, name);
  }
  return name;
}

/** Epoch seconds of a name timestamp read as wall time in `timeZone` (default: process TZ), like PVE's timelocal. */
export function timestampToEpoch(ts: string, timeZone?: string): number {
  const f = timestampFields(ts);
  if (typeof f === 'string') throw new ArchiveNameError(`invalid timestamp '${ts}' - ${f}`, ts);
  return timelocal(f, timeZone);
}

/**
 * How PVE dates and groups a backup (archive_info): a standard vzdump name carries its time, read
 * as wall time in the node's zone whenever it is asked. Any other name (a renamed archive), or a
 * standard one stored under another guest or time (`--vmid`/`--time`), is not standard: it keeps
 * the time it was stored with, and prune leaves it alone.
 */
export function catalogTime(
  b: { archive: string; vmid: number; timestamp: string; ctime: number },
  timeZone?: string,
): { ctime: number; standard: boolean } {
  let a: ArchiveName | undefined;
  try {
    a = parseArchiveName(b.archive);
  } catch {
    a = undefined;
  }
  if (!a?.standard || a.vmid !== b.vmid || a.timestamp !== b.timestamp) return { ctime: b.ctime, standard: false };
  return { ctime: timestampToEpoch(a.timestamp, timeZone), standard: true };
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** `YYYY_MM_DD-HH_MM_SS` of an epoch in `timeZone` (default: process TZ), as vzdump names archives. */
export function epochToTimestamp(epoch: number, timeZone?: string): string {
  const p = localParts(epoch, timeZone);
  return `${pad(p.year, 4)}_${pad(p.month)}_${pad(p.day)}-${pad(p.hour)}_${pad(p.minute)}_${pad(p.second)}`;
}

/** `vzdump-qemu-101-<ts>.log`: the archive name without its `.vma…`/`.tar…`/`.tgz` extension, plus `.log`. */
export function logFileName(archiveFileName: string): string {
  const a = parseArchiveName(archiveFileName);
  return a.fileName.slice(0, a.fileName.length - a.ext.length - 1) + '.log';
}

/** `<archive file name>.notes` (pve-storage NOTES_EXT). */
export function notesFileName(archiveFileName: string): string {
  return parseArchiveName(archiveFileName).fileName + '.notes';
}
