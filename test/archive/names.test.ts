import { execFileSync } from 'node:child_process';
import {
  isVmaFileName,
  archiveFileName,
  compressionFromFileName,
  epochToTimestamp,
  logFileName,
  notesFileName,
  parseArchiveName,
  timestampToEpoch,
} from '../../src/archive/names';
import { ArchiveNameError } from '../../src/errors';

/** Oracle: GNU date(1) reading a wall time in a zone. */
function dateEpoch(wall: string, tz: string): number {
  return Number(execFileSync('date', ['-d', wall, '+%s'], { env: { ...process.env, TZ: tz } }).toString().trim());
}

const vmid = 16110;

describe('parseArchiveName: pve-storage archive_info_test.pm cases', () => {
  // [archive, type, format, compression, ext, ctime under TZ=UTC] from PVE's test file
  const std: [string, string, string, string, string, number][] = [
    [`backup/vzdump-lxc-${vmid}-3070_01_01-00_00_00.tgz`, 'lxc', 'tar', 'gz', 'tgz', 60 * 60 * 24 * (365 * 1100 + 267)],
    [`backup/vzdump-lxc-${vmid}-1970_01_01-02_00_30.tgz`, 'lxc', 'tar', 'gz', 'tgz', 60 * 60 * 2 + 30],
    [`backup/vzdump-lxc-${vmid}-2020_03_30-21_39_30.tgz`, 'lxc', 'tar', 'gz', 'tgz', 1585604370],
    [`backup/vzdump-openvz-${vmid}-2020_03_30-21_39_30.tgz`, 'openvz', 'tar', 'gz', 'tgz', 1585604370],
    [`/here/be/Back-ups/vzdump-qemu-${vmid}-2020_03_30-21_39_30.tgz`, 'qemu', 'tar', 'gz', 'tgz', 1585604370],
  ];
  for (const virt of ['qemu', 'lxc', 'openvz']) {
    const fmt = virt === 'qemu' ? 'vma' : 'tar';
    for (const comp of ['gz', 'lzo', 'zst']) {
      std.push([`backup/vzdump-${virt}-${vmid}-2020_03_30-21_12_40.${fmt}.${comp}`, virt, fmt, comp, `${fmt}.${comp}`, 1585602760]);
    }
  }

  test.each(std)('%s', (archive, type, format, compression, ext, ctime) => {
    const a = parseArchiveName(archive);
    const base = archive.split('/').pop()!;
    expect(a).toEqual({
      fileName: base,
      vmtype: type,
      format,
      compression,
      ext,
      vmid,
      timestamp: base.match(/\d{4}_\d{2}_\d{2}-\d{2}_\d{2}_\d{2}/)![0],
      standard: true,
    });
    expect(timestampToEpoch(a.timestamp!, 'UTC')).toBe(ctime);
    const stem = base.slice(0, base.length - ext.length - 1);
    expect(logFileName(archive)).toBe(`${stem}.log`);
    expect(notesFileName(archive)).toBe(`${base}.notes`);
  });

  test('non-standard name is recognised without vmid and timestamp', () => {
    expect(parseArchiveName(`backup/vzdump-qemu-${vmid}-whatever-the-name_is_here.tgz`)).toEqual({
      fileName: `vzdump-qemu-${vmid}-whatever-the-name_is_here.tgz`,
      vmtype: 'qemu',
      format: 'tar',
      compression: 'gz',
      ext: 'tgz',
      standard: false,
    });
  });

  test.each([
    ['openvz', 'zip'], ['openvz', 'tgz.lzo'], ['openvz', 'zip.gz'], ['openvz', ''],
    ['lxc', 'zip'], ['lxc', 'tgz.lzo'], ['lxc', 'zip.gz'], ['lxc', ''],
    ['qemu', 'vma.xz'], ['qemu', 'vms.gz'], ['qemu', 'vmx.zst'], ['qemu', ''],
    ['none', 'tar.gz'],
  ])('failed match: %s .%s', (virt, suffix) => {
    const archive = `backup/vzdump-${virt}-${vmid}-2020_03_30-21_12_40.${suffix}`;
    expect(() => parseArchiveName(archive)).toThrow(ArchiveNameError);
  });
});

describe('parseArchiveName: more names', () => {
  test('plain .vma is uncompressed', () => {
    const a = parseArchiveName('vzdump-qemu-101-2024_01_02-03_04_05.vma');
    expect(a).toMatchObject({ format: 'vma', compression: 'none', ext: 'vma', vmid: 101, standard: true });
  });

  test('vmid bounds of a standard name: 3 to 9 digits, no leading zero', () => {
    expect(parseArchiveName('vzdump-qemu-99-2024_01_02-03_04_05.vma').standard).toBe(false);
    expect(parseArchiveName('vzdump-qemu-0101-2024_01_02-03_04_05.vma').standard).toBe(false);
    expect(parseArchiveName('vzdump-qemu-999999999-2024_01_02-03_04_05.vma').vmid).toBe(999999999);
    expect(parseArchiveName('vzdump-qemu-1000000000-2024_01_02-03_04_05.vma').standard).toBe(false);
  });

  test('a standard name of another vmtype than its extension suggests keeps the type from the name', () => {
    expect(parseArchiveName('vzdump-qemu-100-2024_01_02-03_04_05.tar.zst')).toMatchObject({ vmtype: 'qemu', format: 'tar', standard: true });
  });

  test.each([
    'vzdump-qemu-101-2024_01_02-03_04_05.vma.dat',
    'vzdump-qemu-101-2024_01_02-03_04_05.dat',
    'vzdump-qemu-101-2024_01_02-03_04_05.tmp',
  ])('vzdump temporary %s is rejected', (n) => {
    expect(() => parseArchiveName(n)).toThrow(/temporary file of a running vzdump backup/);
  });

  test('bz2 is rejected with a reason', () => {
    expect(() => parseArchiveName('vzdump-qemu-101-2024_01_02-03_04_05.vma.bz2')).toThrow(/'vzdump-qemu-101-2024_01_02-03_04_05.vma.bz2': bz2 compression is not supported/);
  });

  test('out-of-range timestamp fields are rejected, as Perl timelocal dies on them', () => {
    expect(() => parseArchiveName('vzdump-qemu-101-2024_13_02-03_04_05.vma')).toThrow(/month 13/);
    expect(() => parseArchiveName('vzdump-qemu-101-2023_02_29-03_04_05.vma')).toThrow(/day 29 out of range 1..28/);
    expect(parseArchiveName('vzdump-qemu-101-2024_02_29-03_04_05.vma').standard).toBe(true);
  });

  test('names are case sensitive and anchored', () => {
    expect(() => parseArchiveName('VZDUMP-qemu-101-2024_01_02-03_04_05.vma')).toThrow(ArchiveNameError);
    expect(() => parseArchiveName('vzdump-qemu-101-2024_01_02-03_04_05.VMA')).toThrow(ArchiveNameError);
    expect(() => parseArchiveName('x-vzdump-qemu-101-2024_01_02-03_04_05.vma')).toThrow(ArchiveNameError);
    expect(() => parseArchiveName('vzdump-qemu-101-2024_01_02-03_04_05.vma.zst.notes')).toThrow(ArchiveNameError);
  });

  test('the error names the file', () => {
    expect(() => parseArchiveName('/a/b/foo.raw')).toThrow(/^'foo.raw': not a vzdump archive name/);
  });
});

describe('compressionFromFileName', () => {
  test.each([
    ['-', 'none'],
    ['out.vma', 'none'],
    ['/x/y/out.vma.zst', 'zst'],
    ['out.vma.lzo', 'lzo'],
    ['out.vma.gz', 'gz'],
  ])('%s -> %s', (n, c) => expect(compressionFromFileName(n)).toBe(c));

  test.each(['out.vma.bz3', 'out.raw', 'out', 'out.vma.bz2', 'out.vma.xz'])('%s is rejected', (n) => {
    expect(() => compressionFromFileName(n)).toThrow(ArchiveNameError);
  });

  test('unknown compression message', () => {
    expect(() => compressionFromFileName('x.vma.bz3')).toThrow(/^'x.vma.bz3': unknown compression '.bz3'/);
  });
});

describe('archiveFileName', () => {
  test.each(['none', 'zst', 'lzo', 'gz'] as const)('round trip through parseArchiveName (%s)', (compression) => {
    const n = archiveFileName({ vmtype: 'qemu', vmid: 101, timestamp: '2024_01_02-03_04_05', compression });
    expect(n).toBe(`vzdump-qemu-101-2024_01_02-03_04_05.vma${compression === 'none' ? '' : '.' + compression}`);
    expect(parseArchiveName(n)).toMatchObject({ vmtype: 'qemu', vmid: 101, timestamp: '2024_01_02-03_04_05', compression, standard: true });
    expect(logFileName(n)).toBe('vzdump-qemu-101-2024_01_02-03_04_05.log');
  });

  test('bad vmid and timestamp are rejected', () => {
    expect(() => archiveFileName({ vmtype: 'qemu', vmid: 7, timestamp: '2024_01_02-03_04_05', compression: 'none' })).toThrow(/invalid vmid 7/);
    expect(() => archiveFileName({ vmtype: 'qemu', vmid: 101, timestamp: '2024-01-02 03:04:05', compression: 'none' })).toThrow(/invalid timestamp/);
  });
});

describe('timestamps and time zones', () => {
  const cases = ['2020_03_30-21_39_30', '2024_07_01-12_00_00', '2024_12_31-23_59_59', '2024_10_27-01_30_00'];

  test.each(cases)('%s in UTC and Europe/Vienna agrees with date(1)', (ts) => {
    const wall = ts.replace(/^(\d+)_(\d+)_(\d+)-(\d+)_(\d+)_(\d+)$/, '$1-$2-$3 $4:$5:$6');
    for (const tz of ['UTC', 'Europe/Vienna', 'America/New_York']) {
      const e = timestampToEpoch(ts, tz);
      expect(e).toBe(dateEpoch(wall, tz));
      expect(epochToTimestamp(e, tz)).toBe(ts);
    }
  });

  test('Vienna summer time is UTC+2, winter UTC+1', () => {
    expect(timestampToEpoch('2024_07_01-12_00_00', 'UTC') - timestampToEpoch('2024_07_01-12_00_00', 'Europe/Vienna')).toBe(7200);
    expect(timestampToEpoch('2024_01_01-12_00_00', 'UTC') - timestampToEpoch('2024_01_01-12_00_00', 'Europe/Vienna')).toBe(3600);
  });

  test('default zone is the process TZ', () => {
    const ts = '2024_07_01-12_00_00';
    expect(timestampToEpoch(ts)).toBe(timestampToEpoch(ts, Intl.DateTimeFormat().resolvedOptions().timeZone));
  });

  test('epochToTimestamp of the real PVE sample ctime', () => {
    expect(epochToTimestamp(1635680622, 'UTC')).toBe('2021_10_31-11_43_42');
    const vienna = execFileSync('date', ['-d', '@1635680622', '+%Y_%m_%d-%H_%M_%S'], { env: { ...process.env, TZ: 'Europe/Vienna' } });
    expect(epochToTimestamp(1635680622, 'Europe/Vienna')).toBe(vienna.toString().trim());
  });

  test('invalid timestamps are rejected', () => {
    expect(() => timestampToEpoch('2024_02_30-00_00_00', 'UTC')).toThrow(ArchiveNameError);
    expect(() => timestampToEpoch('2024_01_01-24_00_00', 'UTC')).toThrow(/hour 24/);
  });
});

test('isVmaFileName: a name before .vma, .vma.zst, .vma.lzo or .vma.gz', () => {
  for (const ok of ['a.vma', 'before-upgrade.vma.zst', 'vzdump-qemu-100-2026_01_01-00_00_00.vma.lzo', 'x.vma.gz']) expect(isVmaFileName(ok)).toBe(true);
  for (const bad of ['.vma', 'a.tar.zst', 'a.vma.bz2', 'a.vma.zst.partial-1', 'a.zst', 'vma']) expect(isVmaFileName(bad)).toBe(false);
});
