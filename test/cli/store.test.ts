/**
 * The store commands end to end through bin/vzdump-zfs on a real pool: ingest, list (text, -Hp,
 * JSON), notes, protect, forget, prune (PVE marks, dry run, protected), restore to a file and to
 * stdout, verify, and one-line errors with the documented exit codes.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { compress } from '../../src/archive/compression';
import { EXIT_CODES } from '../../src/errors';
import { writeVma } from '../../src/vma/writer';
import { clonesLeft, createTestPool, describeZfs, type TestPool } from '../helpers/zpool';

const ROOT = path.join(__dirname, '..', '..');
const CLI = path.join(ROOT, 'bin', 'vzdump-zfs');

function ensureBuilt(): void {
  const dist = path.join(ROOT, 'dist', 'cli.js');
  const newest = (dir: string): number =>
    fs.readdirSync(dir, { withFileTypes: true }).reduce((m, e) => {
      const p = path.join(dir, e.name);
      return Math.max(m, e.isDirectory() ? newest(p) : fs.statSync(p).mtimeMs);
    }, 0);
  if (!fs.existsSync(dist) || fs.statSync(dist).mtimeMs < newest(path.join(ROOT, 'src'))) {
    const r = spawnSync('npx', ['--no-install', 'tsup', '--silent'], { cwd: ROOT, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`build failed: ${r.stderr}`);
  }
}

describeZfs('store CLI', () => {
  let tp: TestPool;
  let work: string;
  let env: NodeJS.ProcessEnv;

  function cli(args: string[], input?: string) {
    const r = spawnSync(process.execPath, [CLI, ...args], { env, encoding: 'buffer', input, maxBuffer: 256 << 20 });
    return { status: r.status, stdout: r.stdout, out: r.stdout.toString(), err: r.stderr.toString() };
  }

  /** A backup of `vmid` at `ts`: by default 8 clusters with one random one (which by `memory`), as .vma.zst. */
  async function archive(vmid: number, ts: string, memory: number, opts: { data?: Buffer; compressed?: boolean } = {}): Promise<string> {
    const compressed = opts.compressed ?? true;
    const p = path.join(work, `vzdump-qemu-${vmid}-${ts}.vma${compressed ? '.zst' : ''}`);
    let data = opts.data;
    if (data === undefined) {
      data = Buffer.alloc(8 * 65536);
      randomBytes(65536).copy(data, 65536 * (memory % 8));
    }
    const vma = writeVma(
      {
        uuid: randomBytes(16),
        ctime: 1767225600,
        configs: [{ name: 'qemu-server.conf', data: Buffer.from(`memory: ${memory}\n#qmdump#map:scsi0:drive-scsi0:local:raw:\n`) }],
        devices: [{ name: 'drive-scsi0', size: data.length }],
      },
      (function* () {
        for (let c = 0; c * 65536 < data.length; c++) yield { devId: 1, cluster: c, data: data.subarray(c * 65536, (c + 1) * 65536) };
      })(),
    );
    await pipeline(Readable.from(compressed ? compress(vma, 'zst') : vma), fs.createWriteStream(p));
    return p;
  }

  beforeAll(async () => {
    ensureBuilt();
    tp = await createTestPool({ sizeBytes: 256 * 1024 * 1024 });
    await tp.zfs.create(tp.root);
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'vz-cli-store-'));
    const cfg = path.join(work, 'config.yaml');
    fs.writeFileSync(cfg, `store:\n  dataset: ${tp.root}\n  lockDir: ${path.join(work, 'locks')}\npve:\n  timeZone: UTC\n`);
    env = { ...process.env, VZDUMP_ZFS_CONFIG: cfg, TZ: 'UTC' };
    // six daily backups of guest 200, two of guest 201
    const days = ['2026_01_01-02_00_00', '2026_01_02-02_00_00', '2026_01_03-02_00_00', '2026_01_04-02_00_00', '2026_01_05-02_00_00', '2026_01_05-14_00_00'];
    for (const [i, ts] of days.entries()) {
      const r = cli(['ingest', await archive(200, ts, 1000 + i)]);
      expect(r.err).toBe(`ingesting 'vzdump-qemu-200-${ts}.vma.zst' into store '${tp.root}'\n`);
      expect(r.status).toBe(0);
      expect(r.out).toMatch(/^stored 'vzdump-qemu-200-.*' as '.*@vzdump-.*': /);
    }
    for (const ts of ['2026_01_01-03_00_00', '2026_01_02-03_00_00']) expect(cli(['ingest', await archive(201, ts, 7)]).status).toBe(0);
  });

  afterAll(async () => {
    await tp?.destroy();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('lists backups as text, -Hp and JSON with PVE field names', () => {
    const text = cli(['list', '--vmid', '201']);
    expect(text.status).toBe(0);
    expect(text.out.split('\n')[0]).toMatch(/^VMID\s+TIME\s+SIZE\s+PROTECTED\s+ARCHIVE\s+NOTES$/);
    expect(text.out).toContain('2026-01-01 03:00:00');
    const hp = cli(['list', '--vmid', '201', '-H', '-p']).out.trim().split('\n');
    expect(hp).toHaveLength(2);
    const size = fs.statSync(path.join(work, 'vzdump-qemu-201-2026_01_01-03_00_00.vma.zst')).size;
    expect(hp[0]!.split('\t')).toEqual(['201', String(Date.UTC(2026, 0, 1, 3) / 1000), String(size), '0', 'vzdump-qemu-201-2026_01_01-03_00_00.vma.zst', '']);
    const json = JSON.parse(cli(['list', '--output-format', 'json']).out);
    expect(json).toHaveLength(8);
    expect(json[0]).toMatchObject({ archive: 'vzdump-qemu-200-2026_01_01-02_00_00.vma.zst', vmid: 200, subtype: 'qemu', ctime: 1767232800, notes: '', protected: false });
    expect(typeof json[0].size).toBe('number');
  });

  it('sets and shows notes, protects, and refuses to forget a protected backup', () => {
    expect(cli(['notes', '200', '2026_01_02-02_00_00', 'before upgrade: kernel 6.8 → 6.14']).status).toBe(0);
    expect(cli(['notes', '200', 'vzdump-qemu-200-2026_01_02-02_00_00.vma.zst']).out).toBe('before upgrade: kernel 6.8 → 6.14\n');
    expect(cli(['protect', '200', '2026_01_02-02_00_00']).status).toBe(0);
    const refused = cli(['forget', '200', '2026_01_02-02_00_00']);
    expect(refused.status).toBe(EXIT_CODES.VZ_ERR_CONFLICT);
    expect(refused.err.trim().split('\n')).toHaveLength(1);
    expect(refused.err).toMatch(/protected/);
    const listed = JSON.parse(cli(['list', '--vmid', '200', '--output-format', 'json']).out);
    expect(listed[1]).toMatchObject({ notes: 'before upgrade: kernel 6.8 → 6.14', protected: true });
  });

  it("prunes with PVE's marks: dry run changes nothing, protected backups are kept and take no slot", () => {
    const dry = cli(['prune', '--vmid', '200', '--keep-daily', '2', '--dry-run', '--output-format', 'json']);
    expect(dry.status).toBe(0);
    const marks = Object.fromEntries(JSON.parse(dry.out).map((e: { archive: string; mark: string }) => [e.archive.slice(16, 35), e.mark]));
    expect(marks).toEqual({
      '2026_01_05-14_00_00': 'keep',
      '2026_01_05-02_00_00': 'remove',
      '2026_01_04-02_00_00': 'keep',
      '2026_01_03-02_00_00': 'remove',
      '2026_01_02-02_00_00': 'protected',
      '2026_01_01-02_00_00': 'remove',
    });
    expect(JSON.parse(cli(['list', '--vmid', '200', '--output-format', 'json']).out)).toHaveLength(6);
    const real = cli(['prune', '--vmid', '200', '--keep-daily', '2']);
    expect(real.status).toBe(0);
    expect(real.out.split('\n')[0]).toMatch(/^VMID\s+TIME\s+MARK\s+ARCHIVE$/);
    const left = JSON.parse(cli(['list', '--vmid', '200', '--output-format', 'json']).out).map((b: { timestamp: string }) => b.timestamp);
    expect(left).toEqual(['2026_01_02-02_00_00', '2026_01_04-02_00_00', '2026_01_05-14_00_00']);
    // guest 201 untouched
    expect(JSON.parse(cli(['list', '--vmid', '201', '--output-format', 'json']).out)).toHaveLength(2);
  });

  it('leaves a backup stored under a non-standard name alone when pruning (PVE: renamed)', async () => {
    const renamed = path.join(work, 'before-upgrade.vma.zst');
    fs.renameSync(await archive(206, '2026_01_01-02_00_00', 1), renamed);
    expect(cli(['ingest', renamed, '--vmid', '206', '--time', '2026_01_01-02_00_00']).status).toBe(0);
    for (const ts of ['2026_01_02-02_00_00', '2026_01_03-02_00_00']) expect(cli(['ingest', await archive(206, ts, 2)]).status).toBe(0);
    // a standard name stored under another time is no longer what its name says: renamed too
    const moved = await archive(206, '2026_01_01-03_00_00', 3);
    expect(cli(['ingest', moved, '--time', '2026_01_01-04_00_00']).status).toBe(0);
    const r = cli(['prune', '--vmid', '206', '--keep-last', '1', '--output-format', 'json']);
    expect(r.status).toBe(0);
    expect(Object.fromEntries(JSON.parse(r.out).map((e: { archive: string; mark: string }) => [e.archive, e.mark]))).toEqual({
      'vzdump-qemu-206-2026_01_03-02_00_00.vma.zst': 'keep',
      'vzdump-qemu-206-2026_01_02-02_00_00.vma.zst': 'remove',
      'vzdump-qemu-206-2026_01_01-03_00_00.vma.zst': 'renamed',
      'before-upgrade.vma.zst': 'renamed',
    });
    const left = JSON.parse(cli(['list', '--vmid', '206', '--output-format', 'json']).out).map((b: { archive: string }) => b.archive);
    expect(left).toEqual(['before-upgrade.vma.zst', 'vzdump-qemu-206-2026_01_01-03_00_00.vma.zst', 'vzdump-qemu-206-2026_01_03-02_00_00.vma.zst']);
  });

  it('names a backup by its archive name, also one stored under a non-standard name or another time', () => {
    // from the test above: before-upgrade.vma.zst is 206 at 01_01-02, and the 01_01-03 archive was stored at 01_01-04
    expect(cli(['notes', '206', 'before-upgrade.vma.zst', 'renamed one']).status).toBe(0);
    expect(cli(['notes', '206', '2026_01_01-02_00_00']).out).toBe('renamed one\n');
    expect(cli(['notes', '206', '/mnt/pve/dump/vzdump-qemu-206-2026_01_01-03_00_00.vma.zst', 'moved one']).status).toBe(0);
    expect(cli(['notes', '206', '2026_01_01-04_00_00']).out).toBe('moved one\n');
    const verified = cli(['verify', '206', 'before-upgrade.vma.zst']);
    expect(verified.status).toBe(0);
    expect(verified.out).toMatch(/^backup 206\/2026_01_01-02_00_00 is intact: /);
    const unknown = cli(['restore', '206', 'nope.vma', '-o', path.join(work, 'nope.vma')]);
    expect(unknown.status).toBe(EXIT_CODES.VZ_ERR_NOT_FOUND);
    expect(unknown.err).toBe("vzdump-zfs: no backup of guest 206 was stored from an archive named 'nope.vma'\n");
    expect(fs.existsSync(path.join(work, 'nope.vma'))).toBe(false);
    // only the exact name: the same time under another compression or format names no stored backup
    for (const other of ['vzdump-qemu-206-2026_01_03-02_00_00.vma.lzo', 'vzdump-qemu-206-2026_01_03-02_00_00.tar.zst']) {
      const r = cli(['forget', '206', other]);
      expect(r.status).toBe(other.endsWith('.tar.zst') ? EXIT_CODES.VZ_ERR_USAGE : EXIT_CODES.VZ_ERR_NOT_FOUND);
    }
    expect(cli(['notes', '206', 'vzdump-qemu-206-2026_01_03-02_00_00.vma.zst']).status).toBe(0);
    const notAName = cli(['notes', '206', 'yesterday']);
    expect(notAName.status).toBe(EXIT_CODES.VZ_ERR_USAGE);
    expect(notAName.err).toBe("vzdump-zfs: invalid backup time 'yesterday' - expected YYYY_MM_DD-HH_MM_SS or the archive name\n");
  });

  it("dates a backup by its name in the node's zone, as PVE does, whatever zone it was ingested in", () => {
    // ingested with pve.timeZone UTC; the node's zone is given later as Europe/Vienna (UTC+1 in January)
    const vienna = (args: string[]) => cli([...args, '--tz', 'Europe/Vienna']);
    const hp = vienna(['list', '--vmid', '201', '-Hp']).out.trim().split('\n').map((l) => l.split('\t').slice(0, 2));
    expect(hp).toEqual([
      ['201', String(Date.UTC(2026, 0, 1, 2) / 1000)],
      ['201', String(Date.UTC(2026, 0, 2, 2) / 1000)],
    ]);
    expect(vienna(['list', '--vmid', '201']).out).toContain('2026-01-01 03:00:00');
    const pruned = JSON.parse(vienna(['prune', '--vmid', '201', '--keep-last', '2', '--dry-run', '--output-format', 'json']).out);
    expect(pruned.map((e: { ctime: number }) => e.ctime)).toEqual([Date.UTC(2026, 0, 2, 2) / 1000, Date.UTC(2026, 0, 1, 2) / 1000]);
  });

  it('rejects contradictory prune options with a usage error', () => {
    const r = cli(['prune', '--keep-all', '--keep-last', '1', '--dry-run']);
    expect(r.status).toBe(EXIT_CODES.VZ_ERR_USAGE);
    expect(r.err).toMatch(/keep-all/);
  });

  it('restores to a compressed file and to stdout, and verifies', () => {
    const out = path.join(work, 'r.vma.zst');
    expect(cli(['restore', '201', '2026_01_02-03_00_00', '-o', out]).status).toBe(0);
    const listed = cli(['vma', 'list', out]);
    expect(listed.out).toMatch(/^CFG: size: \d+ name: qemu-server.conf\nDEV: dev_id=1 size: 524288 devname: drive-scsi0\nCTIME: /);
    const stdout = cli(['restore', '201', '2026_01_02-03_00_00', '-o', '-']);
    expect(stdout.status).toBe(0);
    expect(stdout.stdout.subarray(0, 4).toString('latin1')).toBe('VMA\0');
    expect(cli(['vma', 'verify', '-'], undefined).status).not.toBe(0); // empty stdin is not an archive
    const v = cli(['verify', '201', '2026_01_02-03_00_00']);
    expect(v.status).toBe(0);
    expect(v.out).toMatch(/intact: 1 disks, 8 clusters, 1 configs/);
    // the WebAssembly BLAKE3 (hosts without the native binding) reads the same digests
    const saved = env;
    env = { ...env, VZDUMP_ZFS_BLAKE3: 'wasm' };
    try {
      const w = cli(['verify', '201', '2026_01_02-03_00_00']);
      expect(w.err).toBe('');
      expect(w.out).toMatch(/intact: 1 disks, 8 clusters, 1 configs/);
    } finally {
      env = saved;
    }
  });

  it('restore to stdout fails, and cleans up, when the reader closes the pipe early', async () => {
    // 4 MiB of random disk: far more than a pipe holds
    const ts = '2026_01_01-05_00_00';
    const p = await archive(205, ts, 0, { data: randomBytes(64 * 65536), compressed: false });
    expect(cli(['ingest', p]).status).toBe(0);
    const r = spawnSync('bash', ['-c', `"$0" "$1" restore 205 ${ts} -o - | head -c 16 >/dev/null; exit \${PIPESTATUS[0]}`, process.execPath, CLI], {
      env,
      encoding: 'utf8',
    });
    expect(r.status).toBe(EXIT_CODES.VZ_ERR_IO);
    expect(r.stderr).toBe(
      `vzdump-zfs: restore of backup 205/${ts}: the reader of the output closed it before the archive was complete\n`,
    );
    expect(await clonesLeft(tp.zfs, tp.root)).toEqual([]);
  });

  it('restore stops on SIGINT while its reader stalls, and releases the snapshot', async () => {
    // stdout is a pipe nobody reads: the restore blocks once the pipe is full, a deterministic "mid-stream"
    const child = spawn(process.execPath, [CLI, 'restore', '205', '2026_01_01-05_00_00', '-o', '-'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // the archive has begun (so the command is past start-up and handles signals); nothing is read,
    // and 4 MiB of archive cannot fit the pipe and this side's buffer
    await new Promise((r) => child.stdout.once('readable', r));
    await new Promise((r) => setTimeout(r, 300));
    expect(child.exitCode).toBeNull(); // still blocked on the pipe
    child.kill('SIGINT');
    const code = await exited;
    child.stdout.destroy();
    expect(code).toBe(1);
    expect(err).toContain('WARN: SIGINT received - stopping and removing the partial output\n');
    expect(err).toContain('vzdump-zfs: restore of backup 205/2026_01_01-05_00_00 was stopped\n');
    expect(await clonesLeft(tp.zfs, tp.root)).toEqual([]);
  });

  it('fails with one line and the documented exit code on bad input, leaving backups untouched', async () => {
    const before = cli(['list', '--output-format', 'json']).out;
    const bad = path.join(work, 'vzdump-qemu-202-2026_01_01-00_00_00.vma.zst');
    fs.writeFileSync(bad, randomBytes(1000));
    const cases: Array<[string[], number, RegExp]> = [
      [['ingest', bad], EXIT_CODES.VZ_ERR_COMPRESSION, /vzdump-qemu-202-2026_01_01-00_00_00\.vma\.zst/],
      [['ingest', path.join(work, 'notes.txt')], EXIT_CODES.VZ_ERR_ARCHIVE_NAME, /notes\.txt/],
      [['ingest', path.join(work, 'vzdump-qemu-203-2026_01_01-00_00_00.vma')], EXIT_CODES.VZ_ERR_IO, /vzdump-qemu-203/],
      [['restore', '200', '2020_01_01-00_00_00', '-o', path.join(work, 'x.vma')], EXIT_CODES.VZ_ERR_NOT_FOUND, /2020_01_01-00_00_00/],
      [['restore', '200', '2026_01_04-02_00_00', '-o', path.join(work, 'x.vma.bz2')], EXIT_CODES.VZ_ERR_ARCHIVE_NAME, /x\.vma\.bz2/],
      [['list', '--dataset', `${tp.pool}/nope`], EXIT_CODES.VZ_ERR_NOT_FOUND, /nope/],
      [['notes', '12', '2026_01_04-02_00_00'], EXIT_CODES.VZ_ERR_USAGE, /12/],
      [['notes', '200', '2026_02_30-02_00_00'], EXIT_CODES.VZ_ERR_USAGE, /invalid backup time '2026_02_30-02_00_00' - day 30 out of range 1\.\.28/],
      [['restore', '200', 'nightly', '-o', path.join(work, 'x.vma')], EXIT_CODES.VZ_ERR_USAGE, /expected YYYY_MM_DD-HH_MM_SS or the archive name/],
    ];
    for (const [args, code, re] of cases) {
      const r = cli(args);
      expect([args.join(' '), r.status]).toEqual([args.join(' '), code]);
      expect(r.err).toMatch(re);
      expect(r.err.trim().split('\n').filter((l) => !l.startsWith('ingesting '))).toHaveLength(1);
    }
    expect(fs.existsSync(path.join(work, 'x.vma'))).toBe(false);
    expect(cli(['list', '--output-format', 'json']).out).toBe(before);
  });

  it('reports bad input as such when the store dataset does not exist, before asking zfs', () => {
    const missingStore = ['--dataset', `${tp.pool}/nope`];
    const cases: Array<[string[], number, string]> = [
      [['ingest', path.join(work, 'vzdump-qemu-204-2026_01_01-00_00_00.vma.zst')], EXIT_CODES.VZ_ERR_IO, `cannot read archive '${path.join(work, 'vzdump-qemu-204-2026_01_01-00_00_00.vma.zst')}'`],
      [['ingest', path.join(work, 'nightly.vma.zst')], EXIT_CODES.VZ_ERR_ARCHIVE_NAME, "'nightly.vma.zst': not a standard vzdump name"],
      [['ingest', '--vmid', 'abc', path.join(work, 'nightly.vma.zst')], EXIT_CODES.VZ_ERR_USAGE, "invalid guest id 'abc'"],
      [['list', '--vmid', 'abc'], EXIT_CODES.VZ_ERR_USAGE, "invalid guest id 'abc'"],
      [['prune', '--vmid', '7', '--keep-last', '1'], EXIT_CODES.VZ_ERR_USAGE, "invalid guest id '7'"],
    ];
    for (const [args, code, text] of cases) {
      const r = cli([...args, ...missingStore]);
      expect([args.join(' '), r.status]).toEqual([args.join(' '), code]);
      expect(r.err).toContain(text);
      expect(r.err.trim().split('\n')).toHaveLength(1);
    }
    // the same store error, once the input is fine
    const r = cli(['list', ...missingStore]);
    expect(r.status).toBe(EXIT_CODES.VZ_ERR_NOT_FOUND);
  });

  it('refuses a guest dataset, or a snapshot, as the store root', () => {
    const guest = cli(['list', '--dataset', `${tp.root}/200`]);
    expect(guest.status).toBe(EXIT_CODES.VZ_ERR_USAGE);
    expect(guest.err).toBe(`vzdump-zfs: '${tp.root}/200' is (inside) the dataset of one guest, not a store root - pass the store's root dataset\n`);
    const snap = cli(['list', '--dataset', `${tp.root}/200@vzdump-2026_01_02-02_00_00`]);
    expect(snap.status).toBe(EXIT_CODES.VZ_ERR_USAGE);
    expect(snap.err).toMatch(/^vzdump-zfs: invalid store dataset '.*' - a snapshot or bookmark/);
  });

  it('says when a backup is already stored and exits 0', async () => {
    const p = path.join(work, 'vzdump-qemu-201-2026_01_01-03_00_00.vma.zst');
    const r = cli(['ingest', p]);
    expect(r.status).toBe(0);
    expect(r.out).toMatch(/is already stored/);
  });
});
