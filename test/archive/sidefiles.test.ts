import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { notesFirstLine, readSideFiles, sideFilePaths } from '../../src/archive/sidefiles';
import { ArchiveNameError } from '../../src/errors';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vz-sidefiles-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const name = 'vzdump-qemu-101-2024_01_02-03_04_05.vma.zst';

test('paths follow PVE: log without the archive extension, notes and protected after the full name', () => {
  expect(sideFilePaths(path.join('/d', name))).toEqual({
    log: '/d/vzdump-qemu-101-2024_01_02-03_04_05.log',
    notes: `/d/${name}.notes`,
    protected: `/d/${name}.protected`,
  });
});

test('missing side files are undefined', async () => {
  const a = path.join(dir, name);
  fs.writeFileSync(a, 'x');
  expect(await readSideFiles(a)).toEqual({ protected: false });
});

test('log, UTF-8 notes and protection marker are found and read', async () => {
  const a = path.join(dir, 'vzdump-qemu-102-2024_01_02-03_04_05.vma');
  fs.writeFileSync(a, 'x');
  const log = '2024-01-02 03:04:05 INFO: Starting Backup of VM 102 (qemu)\n';
  const notes = 'Größe: web – prod\nzweite Zeile\n';
  fs.writeFileSync(path.join(dir, 'vzdump-qemu-102-2024_01_02-03_04_05.log'), log);
  fs.writeFileSync(`${a}.notes`, Buffer.from(notes, 'utf8'));
  fs.writeFileSync(`${a}.protected`, '');
  const s = await readSideFiles(a);
  expect(s).toEqual({
    logPath: path.join(dir, 'vzdump-qemu-102-2024_01_02-03_04_05.log'),
    log,
    notesPath: `${a}.notes`,
    notes,
    protected: true,
  });
  expect(notesFirstLine(s.notes!)).toBe('Größe: web – prod');
  expect(notesFirstLine('windows\r\nsecond')).toBe('windows');
  expect(notesFirstLine('a\tb\x1bc\r')).toBe('a b c');
});

test('a non-vzdump name is rejected', async () => {
  await expect(readSideFiles(path.join(dir, 'foo.vma'))).rejects.toBeInstanceOf(ArchiveNameError);
});
