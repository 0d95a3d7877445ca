/**
 * src/cli/main.ts: argument errors found by the parser are reported like every other failure (one
 * line, or one JSON object in JSON mode, exit 2), help and version exit 0, and no command at all is
 * an error that shows the help.
 */
import { main } from '../../src/cli/main';
import { setJsonErrors } from '../../src/cli/common';

async function run(...args: string[]): Promise<{ code: number | undefined; err: string; out: string }> {
  const err: string[] = [];
  const out: string[] = [];
  const e = jest.spyOn(process.stderr, 'write').mockImplementation((c) => (err.push(String(c)), true));
  const o = jest.spyOn(process.stdout, 'write').mockImplementation((c) => (out.push(String(c)), true));
  try {
    process.exitCode = undefined;
    await main(['node', 'vzdump-zfs', ...args]);
    return { code: process.exitCode as number | undefined, err: err.join(''), out: out.join('') };
  } finally {
    e.mockRestore();
    o.mockRestore();
    process.exitCode = undefined;
    setJsonErrors(false);
    process.stdout.removeAllListeners('error');
  }
}

test.each([
  [['list', '--bogus'], "unknown option '--bogus' - see 'vzdump-zfs list --help'"],
  [['bogus'], "unknown command 'bogus' - see 'vzdump-zfs --help'"],
  [['vma', 'extract', 'a.vma'], "missing required argument 'dir' - see 'vzdump-zfs vma extract --help'"],
  [['restore', '101', '2026_01_01-00_00_00'], "required option '-o, --output <FILE>' not specified - see 'vzdump-zfs restore --help'"],
  [['list', 'extra'], "too many arguments for 'list'. Expected 0 arguments but got 1 - see 'vzdump-zfs list --help'"],
  [['list', '--output-format', 'xml'], "invalid --output-format 'xml' - expected text, json or json-pretty"],
  [['list', '--tz', 'Mars/Base'], "invalid --tz 'Mars/Base' - not a known IANA time zone (e.g. Europe/Vienna, UTC)"],
])('%j is a usage error on one line, exit 2', async (args, message) => {
  const r = await run(...args);
  expect(r).toEqual({ code: 2, err: `vzdump-zfs: ${message}\n`, out: '' });
});

test('in JSON mode an argument error is one {code, message} object', async () => {
  const r = await run('prune', '--keep-last', '1', '--bogus', '--output-format', 'json');
  expect(r.code).toBe(2);
  expect(JSON.parse(r.err)).toEqual({ code: 'VZ_ERR_USAGE', message: "unknown option '--bogus' - see 'vzdump-zfs prune --help'" });
  expect(r.err.trim().split('\n')).toHaveLength(1);
});

test('--help and --version exit 0; no command shows the help and exits 2', async () => {
  const help = await run('list', '--help');
  expect(help.code).toBe(0);
  expect(help.out).toMatch(/^Usage: vzdump-zfs list \[options\]/);
  const version = await run('--version');
  expect(version).toEqual({ code: 0, err: '', out: '0.1.0\n' });
  const none = await run();
  expect(none.code).toBe(2);
  expect(none.err).toMatch(/^Usage: vzdump-zfs \[options\] \[command\]/);
});

test('restore checks its output name and options before it opens the store', async () => {
  const ts = '2026_01_01-00_00_00';
  expect(await run('restore', '101', ts, '-o', 'out.tar.zst')).toEqual({
    code: 11,
    err: "vzdump-zfs: 'out.tar.zst': not a VMA archive name - expected .vma, .vma.zst, .vma.lzo or .vma.gz\n",
    out: '',
  });
  expect((await run('restore', '101', ts, '-o', '/tmp')).code).toBe(11);
  expect(await run('restore', '101', ts, '-o', 'x.vma', '--compress', 'zst')).toEqual({
    code: 2,
    err: "vzdump-zfs: --compress is for '-o -' only: the extension of 'x.vma' picks the compression\n",
    out: '',
  });
  for (const bad of ['abc', '0', '-1', '201']) {
    expect(await run('restore', '101', ts, '-o', '-', '--threads', bad)).toEqual({
      code: 2,
      err: `vzdump-zfs: invalid --threads '${bad}' - expected a number from 1 to 200\n`,
      out: '',
    });
  }
});
