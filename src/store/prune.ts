/**
 * PVE's prune-backups retention rules (keep-last/-hourly/-daily/-weekly/-monthly/-yearly) as pure
 * functions: option parsing and validation, and marking a list of backups keep/remove.
 *
 * Owns: the decision which backup to keep. Leaves listing snapshots, destroying them and locking to
 * the store layer. Guarantees: the marks equal those of pve-storage (`PVE::Storage::Plugin::
 * prune_backups` + `PVE::Storage::prune_mark_backup_group`, pve-integration.md §6.2, §6.3) for the
 * same backups, keep options and node time zone; protected and non-standard ("renamed") backups are
 * never marked `remove`; no I/O, no clock (time zone data comes from the ICU built into Node).
 */

import { UsageError } from '../errors';
import { isoWeek, localParts, type LocalParts } from '../util/localtime';

export interface KeepOptions {
  'keep-all'?: boolean;
  'keep-last'?: number;
  'keep-hourly'?: number;
  'keep-daily'?: number;
  'keep-weekly'?: number;
  'keep-monthly'?: number;
  'keep-yearly'?: number;
}

export type PruneMark = 'keep' | 'remove' | 'protected' | 'renamed';

export interface PruneCandidate {
  /** Caller's handle for the backup (snapshot name, volid); carried through unchanged. */
  id: string;
  vmid: number;
  type: 'qemu' | 'lxc';
  /** Backup time, Unix seconds (for a standard name: the time in the name read in the node's zone). */
  ctime: number;
  protected: boolean;
  /** False when the backup does not follow vzdump's naming: PVE then never prunes it. Default true. */
  standardName?: boolean;
}

export interface PruneResult extends PruneCandidate {
  mark: PruneMark;
}

/** The count options in the order PVE applies them (shortest period first). */
export const KEEP_COUNT_OPTIONS = [
  'keep-last',
  'keep-hourly',
  'keep-daily',
  'keep-weekly',
  'keep-monthly',
  'keep-yearly',
] as const;

export type KeepCountOption = (typeof KEEP_COUNT_OPTIONS)[number];

const KNOWN_OPTIONS: ReadonlySet<string> = new Set<string>(['keep-all', ...KEEP_COUNT_OPTIONS]);

// ---------------------------------------------------------------------------------------------
// Options

/**
 * PVE's `validate_prune_backups` plus the schema checks its format applies (known keys, `keep-all`
 * boolean, counts integers >= 0). Returns a new object: `{ 'keep-all': true }` when no count is
 * positive, otherwise the given counts (zeros included, `keep-all` dropped).
 * Throws UsageError naming the offending option.
 */
export function validateKeepOptions(k: KeepOptions): KeepOptions {
  if (typeof k !== 'object' || k === null || Array.isArray(k)) {
    throw new UsageError('prune-backups: expected an object of keep options');
  }
  const raw = k as Record<string, unknown>;
  let keepAll = false;
  const counts: Partial<Record<KeepCountOption, number>> = {};
  for (const key of Object.keys(raw)) {
    const v = raw[key];
    if (v === undefined) continue;
    if (!KNOWN_OPTIONS.has(key)) {
      throw new UsageError(`'${key}': unknown prune-backups option, expected one of ${[...KNOWN_OPTIONS].join(', ')}`);
    }
    if (key === 'keep-all') {
      if (v === true || v === 1) keepAll = true;
      else if (v === false || v === 0) keepAll = false;
      else throw new UsageError(`'keep-all': expected a boolean, got '${String(v)}'`);
      continue;
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw new UsageError(`'${key}': expected an integer >= 0, got '${String(v)}'`);
    }
    counts[key as KeepCountOption] = v;
  }
  const positive = KEEP_COUNT_OPTIONS.filter((o) => (counts[o] ?? 0) > 0);
  if (positive.length === 0) return { 'keep-all': true };
  if (keepAll) {
    throw new UsageError(`'keep-all' cannot be set together with other options (${positive.map((o) => `'${o}'`).join(', ')})`);
  }
  return { ...counts };
}

/**
 * Parse a PVE property string such as `keep-last=3,keep-daily=7` (storage.cfg `prune-backups`,
 * vzdump `--prune-backups`) the way PVE's `parse_property_string` does (comma-separated `key=value`,
 * blank parts skipped, duplicate and unknown keys rejected, booleans 1/on/yes/true and
 * 0/off/no/false), then validate it with {@link validateKeepOptions}. An empty string yields
 * `{ 'keep-all': true }`. Throws UsageError.
 */
export function parsePruneOptions(s: string): KeepOptions {
  const out: Record<string, number | boolean> = {};
  for (const part of s.split(',')) {
    if (/^\s*$/.test(part)) continue;
    const m = /^([^=]+)=(.+)$/.exec(part);
    if (!m) throw new UsageError(`'${part}': expected key=value in prune-backups '${s}'`);
    const key = m[1]!;
    const value = m[2]!;
    if (key in out) throw new UsageError(`'${key}': duplicate key in prune-backups '${s}'`);
    if (!KNOWN_OPTIONS.has(key)) {
      throw new UsageError(`'${key}': unknown prune-backups option, expected one of ${[...KNOWN_OPTIONS].join(', ')}`);
    }
    if (key === 'keep-all') {
      if (/^(1|on|yes|true)$/i.test(value)) out[key] = true;
      else if (/^(0|off|no|false)$/i.test(value)) out[key] = false;
      else throw new UsageError(`'keep-all': expected a boolean, got '${value}'`);
    } else {
      if (!/^-?\d+$/.test(value)) throw new UsageError(`'${key}': expected an integer >= 0, got '${value}'`);
      out[key] = Number(value);
    }
  }
  return validateKeepOptions(out as KeepOptions);
}

// ---------------------------------------------------------------------------------------------
// Marking

/** A group member while marking; `mark` undefined = not decided yet (Perl's undef). */
interface Entry {
  result: PruneResult;
  mark: PruneMark | undefined;
  /** localtime of ctime, computed once per entry */
  local: LocalParts;
}

type PeriodId = (e: Entry) => string;

const PERIOD_IDS: Record<KeepCountOption, PeriodId> = {
  'keep-last': (e) => String(e.result.ctime), // every backup is its own period
  'keep-hourly': ({ local: l }) => `${l.hour}/${l.day}/${l.month}/${l.year}`,
  'keep-daily': ({ local: l }) => `${l.day}/${l.month}/${l.year}`,
  'keep-weekly': ({ local: l }) => {
    const w = isoWeek(l.year, l.month, l.day); // strftime %V / %G of the local date
    return `${w.week}/${w.weekYear}`;
  },
  'keep-monthly': ({ local: l }) => `${l.month}/${l.year}`,
  'keep-yearly': ({ local: l }) => `${l.year}`,
};

/**
 * One keep option over a group sorted newest first (pve-storage `$prune_mark`): periods already
 * holding a kept backup are skipped; the newest undecided backup of each new period is kept until
 * `count` periods were added; older backups of a period just added are removed; the walk stops at
 * the first period beyond `count`, leaving the rest undecided for the next option.
 */
function markPeriods(list: Entry[], count: number | undefined, periodId: PeriodId): void {
  if (!count) return;
  const already = new Set<string>();
  for (const e of list) if (e.mark === 'keep') already.add(periodId(e));
  const added = new Set<string>();
  for (const e of list) {
    if (e.mark !== undefined) continue;
    const id = periodId(e);
    if (already.has(id)) continue;
    if (!added.has(id)) {
      if (added.size >= count) break;
      added.add(id);
      e.mark = 'keep';
    } else {
      e.mark = 'remove';
    }
  }
}

/** pve-storage `prune_mark_backup_group`: marks one type/vmid group in place. */
function markGroup(group: Entry[], keep: KeepOptions): void {
  const opts = keep as Record<string, unknown>;
  // Only the known count options count as "positive" (PVE counts any key, but its schema never lets
  // an unknown key through; a typo here must not turn into "remove everything").
  const positive = KEEP_COUNT_OPTIONS.some((o) => (opts[o] as number) > 0);
  if (opts['keep-all'] || !positive) {
    for (const e of group) if (e.mark === undefined || e.mark === 'remove') e.mark = 'keep';
    return;
  }
  const list = [...group].sort((a, b) => b.result.ctime - a.result.ctime); // stable: ties keep input order
  for (const o of KEEP_COUNT_OPTIONS) markPeriods(list, opts[o] as number | undefined, PERIOD_IDS[o]);
  for (const e of list) e.mark ??= 'remove';
}

/**
 * Mark every candidate as PVE would for the given keep options (not validated here; pass them
 * through {@link validateKeepOptions} first, as PVE's schema does). Non-standard names become
 * `renamed` and take no part; protected backups become `protected` and neither use nor fill a
 * keep slot; every type/vmid group is marked on its own. Period boundaries use the wall clock of
 * `opts.timeZone` (the PVE node's IANA zone; undefined = this process's zone) and ISO-8601 weeks.
 *
 * Returns new objects (candidates are not modified), ordered by vmid ascending, then type
 * (`lxc` before `qemu`), then ctime descending; equal ctimes keep their input order.
 */
export function pruneMark(
  candidates: PruneCandidate[],
  keep: KeepOptions,
  opts: { timeZone?: string } = {},
): PruneResult[] {
  try {
    localParts(0, opts.timeZone);
  } catch (e) {
    throw new UsageError(`'${opts.timeZone}': unknown time zone, expected an IANA name such as 'Europe/Vienna'`, { cause: e });
  }
  const groups = new Map<string, Entry[]>();
  const all: Entry[] = [];
  for (const c of candidates) {
    const e: Entry = {
      result: { ...c, mark: 'keep' },
      mark: undefined,
      local: localParts(c.ctime, opts.timeZone),
    };
    if (c.standardName === false) e.mark = 'renamed';
    else {
      const key = `${c.type}/${c.vmid}`;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = []));
      g.push(e);
    }
    if (c.protected) e.mark = 'protected';
    all.push(e);
  }
  for (const g of groups.values()) markGroup(g, keep);

  const order = [...all].sort(
    (a, b) =>
      a.result.vmid - b.result.vmid ||
      (a.result.type < b.result.type ? -1 : a.result.type > b.result.type ? 1 : 0) ||
      b.result.ctime - a.result.ctime,
  );
  return order.map((e) => {
    if (e.mark === undefined) throw new Error('internal error: backup left unmarked'); // unreachable
    e.result.mark = e.mark;
    return e.result;
  });
}
