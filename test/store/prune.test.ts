/**
 * Tests for src/store/prune.ts: every case of pve-storage's `src/test/prune_backups_test.pm`
 * (same base time, backups, keep options and expected marks, run in UTC as PVE's test runner does),
 * then DST weeks in Europe/Vienna, ISO week-year boundaries, protected and renamed backups, group
 * independence and option validation/parsing.
 *
 * The PVE port includes a small stand-in for the listing side of `PVE::Storage::Plugin::
 * prune_backups` (vmid filter, type filter, archive type/vmid and standard-name detection) so the
 * compared records are the ones PVE's test compares: volid, type, ctime, mark, vmid, sorted by volid.
 */

import { UsageError } from '../../src/errors';
import {
  parsePruneOptions,
  pruneMark,
  validateKeepOptions,
  type KeepOptions,
  type PruneCandidate,
  type PruneMark,
} from '../../src/store/prune';
import { timelocal } from '../../src/util/localtime';

// ---------------------------------------------------------------------------------------------
// Port of pve-storage src/test/prune_backups_test.pm

const STOREID = 'BackTest123';
const VMIDS = [1234, 9001];
const BASETIME = 1577881101; // 2020_01_01-12_18_21 UTC
const DAY = 24 * 60 * 60;
const HOUR = 60 * 60;

/** One row of the mocked `list_volumes` output. */
interface Listed {
  volid: string;
  ctime: number;
  vmid?: number;
  protected?: boolean;
}

function defaultList(): Listed[] {
  const out: Listed[] = [];
  for (const vmid of VMIDS) {
    out.push(
      { volid: `${STOREID}:backup/vzdump-qemu-${vmid}-2018_05_26-11_18_21.tar.zst`, ctime: BASETIME - 585 * DAY - HOUR, vmid },
      { volid: `${STOREID}:backup/vzdump-qemu-${vmid}-2019_12_31-11_18_21.tar.zst`, ctime: BASETIME - DAY - HOUR, vmid },
      {
        volid: `${STOREID}:backup/vzdump-qemu-${vmid}-2019_12_31-11_18_51.tar.zst`,
        ctime: BASETIME - DAY - HOUR + 30,
        vmid,
        protected: true,
      },
      { volid: `${STOREID}:backup/vzdump-qemu-${vmid}-2019_12_31-11_19_21.tar.zst`, ctime: BASETIME - DAY - HOUR + 60, vmid },
      { volid: `${STOREID}:backup/vzdump-qemu-${vmid}-2020_01_01-11_18_21.tar.zst`, ctime: BASETIME - HOUR, vmid },
      { volid: `${STOREID}:backup/vzdump-qemu-${vmid}-2020_01_01-12_18_21.tar.zst`, ctime: BASETIME, vmid },
      { volid: `${STOREID}:backup/vzdump-lxc-${vmid}-2020_01_01-12_18_21.tar.zst`, ctime: BASETIME, vmid },
      { volid: `${STOREID}:backup/vzdump-${vmid}-renamed.tar.zst`, ctime: 1234, vmid },
    );
  }
  return out;
}

const LISTS: Record<string, Listed[]> = {
  default: defaultList(),
  year1970: [
    { volid: `${STOREID}:backup/vzdump-lxc-321-1970_01_01-00_01_23.tar.zst`, ctime: 83, vmid: 321 },
    { volid: `${STOREID}:backup/vzdump-lxc-321-2070_01_01-00_01_00.tar.zst`, ctime: DAY * (365 * 100 + 25) + 60, vmid: 321 },
  ],
  novmid: [{ volid: `${STOREID}:backup/vzdump-lxc-novmid.tar.gz`, ctime: 1234 }],
  threeway: [
    { volid: `${STOREID}:backup/vzdump-qemu-7654-2019_12_25-12_18_21.tar.zst`, ctime: BASETIME - 7 * DAY, vmid: 7654 },
    { volid: `${STOREID}:backup/vzdump-qemu-7654-2019_12_31-12_18_21.tar.zst`, ctime: BASETIME - DAY, vmid: 7654 },
    { volid: `${STOREID}:backup/vzdump-qemu-7654-2020_01_01-12_18_21.tar.zst`, ctime: BASETIME, vmid: 7654 },
  ],
  weekboundary: [
    { volid: `${STOREID}:backup/vzdump-qemu-7654-2020_12_03-12_18_21.tar.zst`, ctime: BASETIME + (366 - 31 + 2) * DAY, vmid: 7654 },
    { volid: `${STOREID}:backup/vzdump-qemu-7654-2020_12_04-12_18_21.tar.zst`, ctime: BASETIME + (366 - 31 + 3) * DAY, vmid: 7654 },
    { volid: `${STOREID}:backup/vzdump-qemu-7654-2020_12_07-12_18_21.tar.zst`, ctime: BASETIME + (366 - 31 + 6) * DAY, vmid: 7654 },
  ],
};

/** The record PVE's test compares. */
interface Got {
  volid: string;
  type: string;
  ctime: number;
  mark: PruneMark | '';
  vmid?: number;
}

/** generate_expected: the default list's records for `vmids`, optionally only one type. */
function generateExpected(vmids: number[], type: 'qemu' | 'lxc' | undefined, marks: Array<PruneMark | ''>): Got[] {
  const out: Got[] = [];
  for (const vmid of vmids) {
    if (type === undefined || type === 'qemu') {
      const q = (name: string, ctime: number, mark: PruneMark | ''): Got => ({
        volid: `${STOREID}:backup/vzdump-qemu-${vmid}-${name}.tar.zst`,
        type: 'qemu',
        ctime,
        mark,
        vmid,
      });
      out.push(
        q('2018_05_26-11_18_21', BASETIME - 585 * DAY - HOUR, marks[0]!),
        q('2019_12_31-11_18_21', BASETIME - DAY - HOUR, marks[1]!),
        q('2019_12_31-11_18_51', BASETIME - DAY - HOUR + 30, 'protected'),
        q('2019_12_31-11_19_21', BASETIME - DAY - HOUR + 60, marks[2]!),
        q('2020_01_01-11_18_21', BASETIME - HOUR, marks[3]!),
        q('2020_01_01-12_18_21', BASETIME, marks[4]!),
      );
    }
    if (type === undefined || type === 'lxc') {
      out.push({
        volid: `${STOREID}:backup/vzdump-lxc-${vmid}-2020_01_01-12_18_21.tar.zst`,
        type: 'lxc',
        ctime: BASETIME,
        mark: marks[5]!,
        vmid,
      });
    }
    if (type === undefined) {
      out.push({ volid: `${STOREID}:backup/vzdump-${vmid}-renamed.tar.zst`, type: 'unknown', ctime: 1234, mark: 'renamed', vmid });
    }
  }
  return byVolid(out);
}

function byVolid(list: Got[]): Got[] {
  return [...list].sort((a, b) => (a.volid < b.volid ? -1 : a.volid > b.volid ? 1 : 0));
}

/**
 * What `archive_info` tells prune_backups about a backup file name: its type (or 'unknown' when
 * the name is not a vzdump archive name at all), the vmid and, for a standard name, the time in
 * the name read in `timeZone`.
 */
function archiveInfo(
  volid: string,
  timeZone: string,
): { type: 'qemu' | 'lxc' | 'openvz' | 'unknown'; vmid?: number; stdCtime?: number } {
  const file = volid.replace(/^[^:]+:backup\//, '');
  const ext = String.raw`\.(?:tgz|(?:tar|vma)(?:\.(?:gz|lzo|zst|bz2))?)$`;
  const known = new RegExp(String.raw`^vzdump-(lxc|openvz|qemu)-.+` + ext).exec(file);
  if (!known) return { type: 'unknown' };
  const type = known[1] as 'qemu' | 'lxc' | 'openvz';
  const std = new RegExp(
    String.raw`^vzdump-(?:lxc|openvz|qemu)-([1-9][0-9]{2,8})-(\d{4})_(\d{2})_(\d{2})-(\d{2})_(\d{2})_(\d{2})` + ext,
  ).exec(file);
  if (!std) return { type };
  const [year, month, day, hour, minute, second] = std.slice(2).map(Number) as [number, number, number, number, number, number];
  return { type, vmid: Number(std[1]), stdCtime: timelocal({ year, month, day, hour, minute, second }, timeZone) };
}

/** Stand-in for PVE::Storage::Plugin->prune_backups(..., dryrun = 1) on a mocked listing. */
function pvePruneBackups(list: Listed[], keep: KeepOptions, vmid?: number, type?: 'qemu' | 'lxc'): Got[] {
  const tz = 'UTC';
  const listed = vmid === undefined ? list : list.filter((b) => b.vmid === vmid);
  const rows: Array<{ got: Got; candidate: PruneCandidate }> = [];
  for (const b of listed) {
    const info = archiveInfo(b.volid, tz);
    if (type !== undefined && type !== info.type) continue;
    const entryVmid = info.vmid ?? b.vmid;
    const standard = info.stdCtime !== undefined;
    const got: Got = { volid: b.volid, type: info.type, ctime: standard ? info.stdCtime! : b.ctime, mark: '' };
    if (entryVmid !== undefined) got.vmid = entryVmid;
    rows.push({
      got,
      candidate: {
        id: b.volid,
        vmid: entryVmid ?? 0,
        // non-standard names are never grouped, so their type only matters for the output order
        type: info.type === 'lxc' ? 'lxc' : 'qemu',
        ctime: got.ctime,
        protected: b.protected === true,
        standardName: standard,
      },
    });
  }
  const marked = pruneMark(
    rows.map((r) => r.candidate),
    keep,
    { timeZone: tz },
  );
  expect(marked).toHaveLength(rows.length);
  const byId = new Map(rows.map((r) => [r.candidate.id, r.got]));
  return byVolid(marked.map((m) => ({ ...byId.get(m.id)!, mark: m.mark })));
}

interface PveCase {
  description: string;
  vmid?: number;
  type?: 'qemu' | 'lxc';
  /** keep options exactly as the Perl test passes them (unvalidated, typo included) */
  keep: Record<string, number>;
  list?: keyof typeof LISTS;
  expected: Got[];
}

const PVE_CASES: PveCase[] = [
  {
    description: 'last=3, multiple IDs',
    keep: { 'keep-last': 3 },
    expected: generateExpected(VMIDS, undefined, ['remove', 'remove', 'keep', 'keep', 'keep', 'keep']),
  },
  {
    description: 'weekly=2, one ID',
    vmid: VMIDS[0],
    keep: { 'keep-weekly': 2 },
    expected: generateExpected([VMIDS[0]!], undefined, ['keep', 'remove', 'remove', 'remove', 'keep', 'keep']),
  },
  {
    description: 'daily=weekly=monthly=1, multiple IDs',
    keep: { 'keep-hourly': 0, 'keep-daily': 1, 'keep-weekly': 1, 'keep-monthly': 1 },
    expected: generateExpected(VMIDS, undefined, ['keep', 'remove', 'keep', 'remove', 'keep', 'keep']),
  },
  {
    description: 'hourly=4, one ID',
    vmid: VMIDS[0],
    keep: { 'keep-hourly': 4, 'keep-daily': 0 },
    expected: generateExpected([VMIDS[0]!], undefined, ['keep', 'remove', 'keep', 'keep', 'keep', 'keep']),
  },
  {
    description: 'yearly=2, multiple IDs',
    keep: { 'keep-hourly': 0, 'keep-daily': 0, 'keep-weekly': 0, 'keep-monthly': 0, 'keep-yearly': 2 },
    expected: generateExpected(VMIDS, undefined, ['remove', 'remove', 'keep', 'remove', 'keep', 'keep']),
  },
  {
    description: 'last=2,hourly=2 one ID',
    vmid: VMIDS[0],
    keep: { 'keep-last': 2, 'keep-hourly': 2 },
    expected: generateExpected([VMIDS[0]!], undefined, ['keep', 'remove', 'keep', 'keep', 'keep', 'keep']),
  },
  {
    description: 'last=1,monthly=2, multiple IDs',
    keep: { 'keep-last': 1, 'keep-monthly': 2 },
    expected: generateExpected(VMIDS, undefined, ['keep', 'remove', 'keep', 'remove', 'keep', 'keep']),
  },
  {
    description: 'monthly=3, one ID',
    vmid: VMIDS[0],
    keep: { 'keep-monthly': 3 },
    expected: generateExpected([VMIDS[0]!], undefined, ['keep', 'remove', 'keep', 'remove', 'keep', 'keep']),
  },
  {
    description: 'last=daily=weekly=1, multiple IDs',
    keep: { 'keep-last': 1, 'keep-daily': 1, 'keep-weekly': 1 },
    expected: generateExpected(VMIDS, undefined, ['keep', 'remove', 'keep', 'remove', 'keep', 'keep']),
  },
  {
    description: 'last=daily=weekly=1, others zero, multiple IDs',
    keep: { 'keep-hourly': 0, 'keep-last': 1, 'keep-daily': 1, 'keep-weekly': 1, 'keep-monthly': 0, 'keep-yearly': 0 },
    expected: generateExpected(VMIDS, undefined, ['keep', 'remove', 'keep', 'remove', 'keep', 'keep']),
  },
  {
    description: 'daily=2, one ID',
    vmid: VMIDS[0],
    keep: { 'keep-daily': 2 },
    expected: generateExpected([VMIDS[0]!], undefined, ['remove', 'remove', 'keep', 'remove', 'keep', 'keep']),
  },
  {
    description: 'weekly=monthly=1, multiple IDs',
    keep: { 'keep-weekly': 1, 'keep-monthly': 1 },
    expected: generateExpected(VMIDS, undefined, ['keep', 'remove', 'remove', 'remove', 'keep', 'keep']),
  },
  {
    description: 'weekly=yearly=1, one ID',
    vmid: VMIDS[0],
    keep: { 'keep-weekly': 1, 'keep-yearly': 1 },
    expected: generateExpected([VMIDS[0]!], undefined, ['keep', 'remove', 'remove', 'remove', 'keep', 'keep']),
  },
  {
    description: 'weekly=yearly=1, one ID, type qemu',
    vmid: VMIDS[0],
    type: 'qemu',
    keep: { 'keep-weekly': 1, 'keep-yearly': 1 },
    expected: generateExpected([VMIDS[0]!], 'qemu', ['keep', 'remove', 'remove', 'remove', 'keep', '']),
  },
  {
    description: 'week=yearly=1, one ID, type lxc',
    vmid: VMIDS[0],
    type: 'lxc',
    keep: { 'keep-last': 1 },
    expected: generateExpected([VMIDS[0]!], 'lxc', ['', '', '', '', '', 'keep']),
  },
  {
    description: 'yearly=1, year before 2000',
    keep: { 'keep-yearly': 1 },
    list: 'year1970',
    expected: [
      { volid: `${STOREID}:backup/vzdump-lxc-321-1970_01_01-00_01_23.tar.zst`, ctime: 83, mark: 'remove', type: 'lxc', vmid: 321 },
      {
        volid: `${STOREID}:backup/vzdump-lxc-321-2070_01_01-00_01_00.tar.zst`,
        ctime: DAY * (365 * 100 + 25) + 60,
        mark: 'keep',
        type: 'lxc',
        vmid: 321,
      },
    ],
  },
  {
    description: 'last=1, ne ID, year before 2000',
    keep: { 'keep-last': 1 },
    list: 'novmid',
    expected: [{ volid: `${STOREID}:backup/vzdump-lxc-novmid.tar.gz`, ctime: 1234, mark: 'renamed', type: 'lxc' }],
  },
  {
    description: 'all missing, multiple IDs',
    keep: {},
    expected: generateExpected(VMIDS, undefined, ['keep', 'keep', 'keep', 'keep', 'keep', 'keep']),
  },
  {
    description: 'all zero, multiple IDs',
    // 'keep-monthyl' is misspelt in the Perl test too; with value 0 it changes nothing
    keep: { 'keep-last': 0, 'keep-hourly': 0, 'keep-daily': 0, 'keep-weekly': 0, 'keep-monthyl': 0, 'keep-yearly': 0 },
    expected: generateExpected(VMIDS, undefined, ['keep', 'keep', 'keep', 'keep', 'keep', 'keep']),
  },
  {
    description: 'some zero, some missing, multiple IDs',
    keep: { 'keep-last': 0, 'keep-hourly': 0, 'keep-daily': 0, 'keep-monthyl': 0, 'keep-yearly': 0 },
    expected: generateExpected(VMIDS, undefined, ['keep', 'keep', 'keep', 'keep', 'keep', 'keep']),
  },
  {
    description: 'daily=weekly=monthly=1',
    keep: { 'keep-daily': 1, 'keep-weekly': 1, 'keep-monthly': 1 },
    list: 'threeway',
    expected: [
      { volid: `${STOREID}:backup/vzdump-qemu-7654-2019_12_25-12_18_21.tar.zst`, ctime: BASETIME - 7 * DAY, type: 'qemu', vmid: 7654, mark: 'keep' },
      // the month is already covered by the backup kept by keep-weekly
      { volid: `${STOREID}:backup/vzdump-qemu-7654-2019_12_31-12_18_21.tar.zst`, ctime: BASETIME - DAY, type: 'qemu', vmid: 7654, mark: 'remove' },
      { volid: `${STOREID}:backup/vzdump-qemu-7654-2020_01_01-12_18_21.tar.zst`, ctime: BASETIME, type: 'qemu', vmid: 7654, mark: 'keep' },
    ],
  },
  {
    description: 'daily=weekly=1,weekboundary',
    keep: { 'keep-daily': 1, 'keep-weekly': 1 },
    list: 'weekboundary',
    expected: [
      {
        volid: `${STOREID}:backup/vzdump-qemu-7654-2020_12_03-12_18_21.tar.zst`,
        ctime: BASETIME + (366 - 31 + 2) * DAY,
        type: 'qemu',
        vmid: 7654,
        mark: 'remove',
      },
      {
        volid: `${STOREID}:backup/vzdump-qemu-7654-2020_12_04-12_18_21.tar.zst`,
        ctime: BASETIME + (366 - 31 + 3) * DAY,
        type: 'qemu',
        vmid: 7654,
        mark: 'keep',
      },
      {
        volid: `${STOREID}:backup/vzdump-qemu-7654-2020_12_07-12_18_21.tar.zst`,
        ctime: BASETIME + (366 - 31 + 6) * DAY,
        type: 'qemu',
        vmid: 7654,
        mark: 'keep',
      },
    ],
  },
];

describe('pve-storage prune_backups_test.pm, ported (TZ=UTC)', () => {
  test('the port has all 22 cases of the Perl test', () => {
    expect(PVE_CASES).toHaveLength(22);
  });

  test.each(PVE_CASES.map((c) => [c.description, c] as const))('%s', (_d, c) => {
    const got = pvePruneBackups(LISTS[c.list ?? 'default']!, c.keep as KeepOptions, c.vmid, c.type);
    expect(got).toEqual(c.expected);
  });

  test('standard names read in UTC give the fixture ctimes', () => {
    for (const b of LISTS.default!) {
      const info = archiveInfo(b.volid, 'UTC');
      if (info.stdCtime !== undefined) expect(info.stdCtime).toBe(b.ctime);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Beyond PVE's test: time zones, week years, protected, renamed, groups

/** Epoch seconds of an ISO 8601 instant with explicit offset (independent of src/util/localtime). */
const at = (iso: string): number => Date.parse(iso) / 1000;

function backups(times: string[], extra: Partial<PruneCandidate> = {}): PruneCandidate[] {
  return times.map((t) => ({ id: t, vmid: 100, type: 'qemu' as const, ctime: at(t), protected: false, ...extra }));
}

/** Marks by candidate id, for readable expectations. */
function marksOf(candidates: PruneCandidate[], keep: KeepOptions, timeZone?: string): Record<string, PruneMark> {
  const out: Record<string, PruneMark> = {};
  for (const r of pruneMark(candidates, keep, { timeZone })) out[r.id] = r.mark;
  return out;
}

describe('local time zone of the PVE node', () => {
  // Europe/Vienna leaves summer time on 2026-10-25: 03:00 CEST becomes 02:00 CET, so the wall
  // hour 02 happens twice.
  const fallBack = [
    '2026-10-25T01:30:00+02:00', // 23:30 UTC on the 24th
    '2026-10-25T02:30:00+02:00', // first 02:30 (CEST)
    '2026-10-25T02:30:00+01:00', // second 02:30 (CET), one hour later
    '2026-10-25T03:30:00+01:00',
  ];

  test('DST fall-back: both 02:30 backups are one local hour in Europe/Vienna', () => {
    expect(marksOf(backups(fallBack), { 'keep-hourly': 3 }, 'Europe/Vienna')).toEqual({
      '2026-10-25T03:30:00+01:00': 'keep',
      '2026-10-25T02:30:00+01:00': 'keep', // newest of the repeated hour 02
      '2026-10-25T02:30:00+02:00': 'remove', // older backup of the same local hour
      '2026-10-25T01:30:00+02:00': 'keep',
    });
  });

  test('DST fall-back: the same backups are four distinct hours in UTC', () => {
    expect(marksOf(backups(fallBack), { 'keep-hourly': 3 }, 'UTC')).toEqual({
      '2026-10-25T03:30:00+01:00': 'keep',
      '2026-10-25T02:30:00+01:00': 'keep',
      '2026-10-25T02:30:00+02:00': 'keep',
      '2026-10-25T01:30:00+02:00': 'remove',
    });
  });

  // The DST week: Monday 2026-10-26 00:30 CET is still Sunday 23:30 UTC.
  const dstWeek = ['2026-10-18T12:00:00+02:00', '2026-10-25T12:00:00+01:00', '2026-10-26T00:30:00+01:00'];

  test('DST week: ISO weeks follow the local date in Europe/Vienna', () => {
    expect(marksOf(backups(dstWeek), { 'keep-weekly': 2 }, 'Europe/Vienna')).toEqual({
      '2026-10-26T00:30:00+01:00': 'keep', // week 44
      '2026-10-25T12:00:00+01:00': 'keep', // week 43, the week with the 25-hour Sunday
      '2026-10-18T12:00:00+02:00': 'remove', // week 42: beyond two weeks
    });
    expect(marksOf(backups(dstWeek), { 'keep-weekly': 2 }, 'UTC')).toEqual({
      '2026-10-26T00:30:00+01:00': 'keep', // Sunday in UTC, week 43
      '2026-10-25T12:00:00+01:00': 'remove', // same UTC week, older
      '2026-10-18T12:00:00+02:00': 'keep', // week 42
    });
  });

  // Summer time starts 2026-03-29: that local day has 23 hours.
  const springForward = ['2026-03-28T23:30:00+01:00', '2026-03-29T00:30:00+01:00', '2026-03-29T23:30:00+02:00'];

  test('DST spring-forward: the 23-hour day is one day in Europe/Vienna', () => {
    expect(marksOf(backups(springForward), { 'keep-daily': 2 }, 'Europe/Vienna')).toEqual({
      '2026-03-29T23:30:00+02:00': 'keep',
      '2026-03-29T00:30:00+01:00': 'remove',
      '2026-03-28T23:30:00+01:00': 'keep',
    });
    expect(marksOf(backups(springForward), { 'keep-daily': 2 }, 'UTC')).toEqual({
      '2026-03-29T23:30:00+02:00': 'keep', // 21:30 UTC on the 29th
      '2026-03-29T00:30:00+01:00': 'keep', // 23:30 UTC on the 28th
      '2026-03-28T23:30:00+01:00': 'remove', // 22:30 UTC on the 28th
    });
  });

  test('year boundary: New Year happens an hour earlier in Vienna than in UTC', () => {
    const b = backups(['2020-12-31T12:00:00Z', '2020-12-31T23:30:00Z']);
    expect(marksOf(b, { 'keep-yearly': 2 }, 'Europe/Vienna')).toEqual({
      '2020-12-31T23:30:00Z': 'keep', // 2021 in Vienna
      '2020-12-31T12:00:00Z': 'keep', // 2020
    });
    expect(marksOf(b, { 'keep-yearly': 2 }, 'UTC')).toEqual({
      '2020-12-31T23:30:00Z': 'keep',
      '2020-12-31T12:00:00Z': 'remove',
    });
  });

  test('without a time zone the process zone (TZ) is used', () => {
    const b = backups(fallBack);
    const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
    expect(pruneMark(b, { 'keep-hourly': 3 })).toEqual(pruneMark(b, { 'keep-hourly': 3 }, { timeZone: tz }));
  });

  test('an unknown time zone is a UsageError naming it', () => {
    expect(() => pruneMark(backups(fallBack), { 'keep-last': 1 }, { timeZone: 'Mars/Olympus' })).toThrow(UsageError);
    expect(() => pruneMark(backups(fallBack), { 'keep-last': 1 }, { timeZone: 'Mars/Olympus' })).toThrow(/'Mars\/Olympus'/);
  });
});

describe('ISO week-year boundaries', () => {
  // 2020 has an ISO week 53: Monday 2020-12-28 .. Sunday 2021-01-03.
  const w53 = ['2020-12-28T12:00:00Z', '2021-01-01T12:00:00Z', '2021-01-04T12:00:00Z'];

  test('Friday 2021-01-01 is in week 53 of 2020, with Monday 2020-12-28', () => {
    expect(marksOf(backups(w53), { 'keep-weekly': 2 }, 'UTC')).toEqual({
      '2021-01-04T12:00:00Z': 'keep', // W01/2021
      '2021-01-01T12:00:00Z': 'keep', // W53/2020
      '2020-12-28T12:00:00Z': 'remove', // W53/2020, older
    });
  });

  test('keep-yearly uses the calendar year, not the ISO week year', () => {
    expect(marksOf(backups(w53), { 'keep-yearly': 2 }, 'UTC')).toEqual({
      '2021-01-04T12:00:00Z': 'keep', // 2021
      '2021-01-01T12:00:00Z': 'remove', // 2021, older
      '2020-12-28T12:00:00Z': 'keep', // 2020
    });
  });

  // Tuesday 2024-12-31 belongs to week 1 of 2025; Sunday 2024-12-29 to week 52 of 2024.
  const w01 = ['2024-12-29T12:00:00Z', '2024-12-31T12:00:00Z', '2025-01-01T12:00:00Z'];

  test('Tuesday 2024-12-31 shares week 1 of 2025 with 2025-01-01', () => {
    expect(marksOf(backups(w01), { 'keep-weekly': 1 }, 'UTC')).toEqual({
      '2025-01-01T12:00:00Z': 'keep',
      '2024-12-31T12:00:00Z': 'remove',
      '2024-12-29T12:00:00Z': 'remove',
    });
    expect(marksOf(backups(w01), { 'keep-weekly': 2 }, 'UTC')).toEqual({
      '2025-01-01T12:00:00Z': 'keep',
      '2024-12-31T12:00:00Z': 'remove',
      '2024-12-29T12:00:00Z': 'keep',
    });
  });
});

describe('protected and renamed backups', () => {
  const days = ['2026-01-01T10:00:00Z', '2026-01-02T10:00:00Z', '2026-01-03T10:00:00Z', '2026-01-04T10:00:00Z', '2026-01-05T10:00:00Z'];

  test('protected backups neither use nor fill keep-last slots', () => {
    const b = backups(days).map((c, i) => ({ ...c, protected: i >= 3 })); // the two newest
    expect(marksOf(b, { 'keep-last': 2 }, 'UTC')).toEqual({
      '2026-01-05T10:00:00Z': 'protected',
      '2026-01-04T10:00:00Z': 'protected',
      '2026-01-03T10:00:00Z': 'keep',
      '2026-01-02T10:00:00Z': 'keep',
      '2026-01-01T10:00:00Z': 'remove',
    });
  });

  test('a protected backup does not cover its period for other backups', () => {
    const b = backups(['2026-01-04T18:00:00Z', '2026-01-04T06:00:00Z', '2026-01-03T06:00:00Z']);
    b[0]!.protected = true;
    expect(marksOf(b, { 'keep-daily': 1 }, 'UTC')).toEqual({
      '2026-01-04T18:00:00Z': 'protected',
      '2026-01-04T06:00:00Z': 'keep', // the newest unprotected backup of that day
      '2026-01-03T06:00:00Z': 'remove',
    });
  });

  test('keep-all keeps everything and leaves protected marked protected', () => {
    const b = backups(days).map((c, i) => ({ ...c, protected: i === 1 }));
    const marks = marksOf(b, { 'keep-all': true }, 'UTC');
    expect(marks['2026-01-02T10:00:00Z']).toBe('protected');
    expect(Object.values(marks).filter((m) => m === 'keep')).toHaveLength(4);
    // no positive option at all behaves the same
    expect(marksOf(b, { 'keep-last': 0 }, 'UTC')).toEqual(marks);
  });

  test('non-standard names are renamed, never removed and take no slot; protected wins', () => {
    const b = backups(days);
    b[4]!.standardName = false; // newest
    b[0]!.standardName = false; // oldest
    b[0]!.protected = true;
    expect(marksOf(b, { 'keep-last': 1 }, 'UTC')).toEqual({
      '2026-01-05T10:00:00Z': 'renamed',
      '2026-01-04T10:00:00Z': 'keep',
      '2026-01-03T10:00:00Z': 'remove',
      '2026-01-02T10:00:00Z': 'remove',
      '2026-01-01T10:00:00Z': 'protected',
    });
  });
});

describe('groups and result shape', () => {
  test('each type/vmid group is marked on its own; order is vmid, type, newest first', () => {
    const t = ['2026-02-01T00:00:00Z', '2026-02-02T00:00:00Z', '2026-02-03T00:00:00Z'];
    const input: PruneCandidate[] = [
      ...backups(t, { vmid: 200, type: 'qemu' }).map((c) => ({ ...c, id: `q200 ${c.id}` })),
      ...backups(t, { vmid: 101, type: 'qemu' }).map((c) => ({ ...c, id: `q101 ${c.id}` })),
      ...backups(t, { vmid: 101, type: 'lxc' }).map((c) => ({ ...c, id: `l101 ${c.id}` })),
    ];
    const snapshot = JSON.parse(JSON.stringify(input));
    const res = pruneMark(input, { 'keep-last': 1 }, { timeZone: 'UTC' });
    expect(res.map((r) => `${r.id} ${r.mark}`)).toEqual([
      'l101 2026-02-03T00:00:00Z keep',
      'l101 2026-02-02T00:00:00Z remove',
      'l101 2026-02-01T00:00:00Z remove',
      'q101 2026-02-03T00:00:00Z keep',
      'q101 2026-02-02T00:00:00Z remove',
      'q101 2026-02-01T00:00:00Z remove',
      'q200 2026-02-03T00:00:00Z keep',
      'q200 2026-02-02T00:00:00Z remove',
      'q200 2026-02-01T00:00:00Z remove',
    ]);
    expect(input).toEqual(snapshot); // candidates untouched
    expect(res[0]).toEqual({ ...input[8], mark: 'keep' }); // all candidate fields carried through
  });

  test('an option stops at the first period beyond its count; later options see the rest', () => {
    // keep-daily=1 keeps the newest; keep-monthly=1 then skips January 2026 (already kept)
    // and keeps the newest of December 2025.
    const b = backups(['2025-12-10T00:00:00Z', '2025-12-20T00:00:00Z', '2026-01-05T00:00:00Z', '2026-01-06T00:00:00Z']);
    expect(marksOf(b, { 'keep-daily': 1, 'keep-monthly': 1 }, 'UTC')).toEqual({
      '2026-01-06T00:00:00Z': 'keep',
      '2026-01-05T00:00:00Z': 'remove',
      '2025-12-20T00:00:00Z': 'keep',
      '2025-12-10T00:00:00Z': 'remove',
    });
  });

  test('unknown keys do not count as positive options (no accidental remove-all)', () => {
    const b = backups(['2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z']);
    const marks = marksOf(b, { 'keep-lats': 1 } as unknown as KeepOptions, 'UTC');
    expect(Object.values(marks)).toEqual(['keep', 'keep']);
  });

  test('an empty list gives an empty result', () => {
    expect(pruneMark([], { 'keep-last': 1 }, { timeZone: 'UTC' })).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Validation and parsing

describe('validateKeepOptions', () => {
  test.each<[string, KeepOptions, KeepOptions]>([
    ['empty', {}, { 'keep-all': true }],
    ['all zero', { 'keep-last': 0, 'keep-daily': 0 }, { 'keep-all': true }],
    ['keep-all alone', { 'keep-all': true }, { 'keep-all': true }],
    ['keep-all with zeros', { 'keep-all': true, 'keep-last': 0 }, { 'keep-all': true }],
    ['keep-all false dropped', { 'keep-all': false, 'keep-last': 2 }, { 'keep-last': 2 }],
    ['zeros kept next to positives', { 'keep-last': 0, 'keep-daily': 7 }, { 'keep-last': 0, 'keep-daily': 7 }],
    [
      'all options',
      { 'keep-last': 1, 'keep-hourly': 2, 'keep-daily': 3, 'keep-weekly': 4, 'keep-monthly': 5, 'keep-yearly': 6 },
      { 'keep-last': 1, 'keep-hourly': 2, 'keep-daily': 3, 'keep-weekly': 4, 'keep-monthly': 5, 'keep-yearly': 6 },
    ],
  ])('%s', (_d, input, expected) => {
    expect(validateKeepOptions(input)).toEqual(expected);
  });

  test.each<[string, unknown, RegExp]>([
    ['keep-all with a positive option', { 'keep-all': true, 'keep-weekly': 2 }, /'keep-all' cannot be set together with other options \('keep-weekly'\)/],
    ['negative count', { 'keep-daily': -1 }, /'keep-daily': expected an integer >= 0, got '-1'/],
    ['fraction', { 'keep-monthly': 1.5 }, /'keep-monthly': expected an integer >= 0/],
    ['NaN', { 'keep-last': NaN }, /'keep-last'/],
    ['string count', { 'keep-yearly': '3' }, /'keep-yearly'/],
    ['unknown option', { 'keep-lats': 3 }, /'keep-lats': unknown prune-backups option/],
    ['non-boolean keep-all', { 'keep-all': 'yes' }, /'keep-all': expected a boolean/],
    ['not an object', null, /expected an object/],
  ])('%s is a UsageError naming the option', (_d, input, message) => {
    let err: unknown;
    try {
      validateKeepOptions(input as KeepOptions);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).code).toBe('VZ_ERR_USAGE');
    expect((err as Error).message).toMatch(message);
  });

  test('does not modify its argument', () => {
    const k: KeepOptions = { 'keep-all': false, 'keep-last': 3 };
    validateKeepOptions(k);
    expect(k).toEqual({ 'keep-all': false, 'keep-last': 3 });
  });
});

describe('parsePruneOptions', () => {
  test.each<[string, KeepOptions]>([
    ['keep-last=3,keep-daily=7', { 'keep-last': 3, 'keep-daily': 7 }],
    ['', { 'keep-all': true }],
    ['keep-all=1', { 'keep-all': true }],
    ['keep-all=true', { 'keep-all': true }],
    ['keep-all=0,keep-weekly=2', { 'keep-weekly': 2 }],
    ['keep-last=0', { 'keep-all': true }],
    [',keep-hourly=24, ,keep-yearly=10,', { 'keep-hourly': 24, 'keep-yearly': 10 }],
    ['keep-monthly=007', { 'keep-monthly': 7 }],
  ])('%j', (s, expected) => {
    expect(parsePruneOptions(s)).toEqual(expected);
  });

  test.each<[string, RegExp]>([
    ['keep-all=1,keep-last=2', /'keep-all' cannot be set together with other options \('keep-last'\)/],
    ['keep-last=3,keep-last=4', /'keep-last': duplicate key/],
    ['keep-last', /'keep-last': expected key=value/],
    ['keep-last=', /'keep-last=': expected key=value/],
    ['keep-last=-1', /'keep-last': expected an integer >= 0, got '-1'/],
    ['keep-daily=two', /'keep-daily': expected an integer >= 0, got 'two'/],
    ['keep-daily=1.5', /'keep-daily': expected an integer >= 0/],
    ['keep-foo=1', /'keep-foo': unknown prune-backups option/],
    ['keep-all=maybe', /'keep-all': expected a boolean, got 'maybe'/],
  ])('%j is a UsageError', (s, message) => {
    expect(() => parsePruneOptions(s)).toThrow(UsageError);
    expect(() => parsePruneOptions(s)).toThrow(message);
  });

  test('parsed options drive pruneMark like the object form', () => {
    const b = backups(['2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z', '2026-01-09T00:00:00Z']);
    expect(pruneMark(b, parsePruneOptions('keep-daily=1,keep-weekly=2'), { timeZone: 'UTC' })).toEqual(
      pruneMark(b, { 'keep-daily': 1, 'keep-weekly': 2 }, { timeZone: 'UTC' }),
    );
  });
});
