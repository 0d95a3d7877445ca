import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ts from 'typescript';
import { isoWeek, localParts, timelocal, utcOffset, type LocalParts } from '../../src/util/localtime';

/** What the system's own strftime/mktime (GNU date, tzdata) says, as the independent oracle. */
function dateCmd(args: string[], tz: string): string {
  return execFileSync('date', args, { env: { ...process.env, TZ: tz } }).toString().trim();
}

describe('localParts', () => {
  it.each([
    [0, 'UTC'],
    [1577881101, 'UTC'],
    [1635680622, 'Europe/Vienna'],
    [1711846800, 'Europe/Vienna'], // 2024-03-31 01:00 UTC, just after the spring-forward change
    [1730595600, 'America/New_York'],
    [1767225599, 'Asia/Kolkata'],
  ])('epoch %i in %s matches date(1)', (epoch, tz) => {
    const p = localParts(epoch, tz);
    const expected = dateCmd(['-d', `@${epoch}`, '+%Y %-m %-d %-H %-M %-S %w'], tz).split(' ').map(Number);
    expect([p.year, p.month, p.day, p.hour, p.minute, p.second, p.weekday]).toEqual(expected);
  });
});

describe('localParts in the process zone and in UTC (Date getters, no ICU formatter)', () => {
  // The process zone is fixed at start-up (jest's sandboxed process.env.TZ does not reach V8), so
  // the module runs in a child node with TZ set: transpiled on the fly, nothing else loaded.
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vz-localtime-'));
    const src = fs.readFileSync(path.join(__dirname, '..', '..', 'src', 'util', 'localtime.ts'), 'utf8');
    const js = ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } }).outputText;
    fs.writeFileSync(path.join(dir, 'localtime.js'), js);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** [process-zone parts, named-zone parts] of each epoch, computed in a node with TZ=tz */
  function inChild(tz: string, epochs: number[]): [LocalParts, LocalParts][] {
    const script = `const { localParts } = require(${JSON.stringify(path.join(dir, 'localtime.js'))});
      const epochs = JSON.parse(process.argv[1]);
      process.stdout.write(JSON.stringify(epochs.map((e) => [localParts(e), localParts(e, ${JSON.stringify(tz)})])));`;
    const out = execFileSync(process.execPath, ['-e', script, JSON.stringify(epochs)], { env: { ...process.env, TZ: tz }, maxBuffer: 64 << 20 });
    return JSON.parse(out.toString()) as [LocalParts, LocalParts][];
  }

  it.each([
    [1635680622, 'Europe/Vienna'],
    [1711846800, 'Europe/Vienna'],
    [1730595600, 'America/New_York'],
    [1767225599, 'Asia/Kolkata'],
  ])('epoch %i with TZ=%s matches date(1)', (epoch, tz) => {
    const [[p]] = inChild(tz, [epoch]) as [[LocalParts, LocalParts]];
    const expected = dateCmd(['-d', `@${epoch}`, '+%Y %-m %-d %-H %-M %-S %w'], tz).split(' ').map(Number);
    expect([p.year, p.month, p.day, p.hour, p.minute, p.second, p.weekday]).toEqual(expected);
  });

  it('agrees with the named-zone path every 97 minutes across two years, DST changes included', () => {
    const epochs: number[] = [];
    for (let e = 1704067200; e < 1767225600; e += 97 * 60) epochs.push(e);
    for (const tz of ['Europe/Vienna', 'America/New_York', 'Australia/Lord_Howe']) {
      const pairs = inChild(tz, epochs);
      expect(pairs).toHaveLength(epochs.length);
      for (const [own, named] of pairs) expect(own).toEqual(named);
    }
    for (const e of epochs) expect(localParts(e, 'UTC')).toEqual(localParts(e, 'Etc/UTC'));
  });
});

describe('timelocal', () => {
  it.each([
    ['2024-01-01 00:00:00', 'UTC'],
    ['2021-10-31 12:43:42', 'Europe/Vienna'],
    ['2024-07-15 23:59:59', 'America/Los_Angeles'],
    ['2024-03-31 03:30:00', 'Europe/Vienna'], // first hour after the gap
  ])('%s in %s matches date(1)', (wall, tz) => {
    const [d, t] = wall.split(' ');
    const [year, month, day] = d!.split('-').map(Number);
    const [hour, minute, second] = t!.split(':').map(Number);
    const expected = Number(dateCmd(['-d', wall, '+%s'], tz));
    expect(timelocal({ year: year!, month: month!, day: day!, hour: hour!, minute: minute!, second: second! }, tz)).toBe(expected);
  });

  it('round-trips every hour across a DST year in Europe/Vienna (unambiguous hours)', () => {
    const start = Date.UTC(2024, 0, 1) / 1000;
    for (let t = start; t < start + 366 * 86400; t += 3600) {
      const p = localParts(t, 'Europe/Vienna');
      const back = timelocal(p, 'Europe/Vienna');
      // in the repeated fall-back hour the earlier instant wins, like Perl's timelocal
      expect(back === t || back === t - 3600).toBe(true);
    }
  });

  it('returns the earlier instant for an ambiguous fall-back wall time', () => {
    const wall = { year: 2024, month: 10, day: 27, hour: 2, minute: 30, second: 0 };
    const t = timelocal(wall, 'Europe/Vienna');
    expect(utcOffset(t, 'Europe/Vienna')).toBe(7200);
  });
});

describe('isoWeek', () => {
  it.each([
    [2020, 12, 31],
    [2021, 1, 1],
    [2021, 1, 4],
    [2024, 12, 30],
    [2026, 1, 1],
    [2027, 1, 3],
    [2015, 12, 31],
    [2016, 1, 3],
  ])('%i-%i-%i matches strftime %%V/%%G', (y, m, d) => {
    const expected = dateCmd(['-d', `${y}-${m}-${d} 12:00`, '+%V %G'], 'UTC').split(' ').map(Number);
    const w = isoWeek(y, m, d);
    expect([w.week, w.weekYear]).toEqual(expected);
  });
});
