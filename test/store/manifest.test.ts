import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { IntegrityError, IoError } from '../../src/errors';
import { MANIFEST_FILE, MANIFEST_FORMAT, readManifest, writeManifest, type Manifest } from '../../src/store/manifest';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vz-manifest-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function manifest(): Manifest {
  return {
    format: MANIFEST_FORMAT,
    vmid: 100,
    subtype: 'qemu',
    archive: 'vzdump-qemu-100-2026_01_01-00_00_00.vma.zst',
    timestamp: '2026_01_01-00_00_00',
    ctime: 1767225600,
    source: { compression: 'zst', size: 123, uuid: '00'.repeat(16), vmaCtime: 1767225600 },
    configs: [{ name: 'qemu-server.conf', size: 9, sha256: 'ab'.repeat(32) }],
    disks: [{ id: 1, name: 'drive-scsi0', size: 65536, image: 'disk-drive-scsi0.raw', digests: 'disk-drive-scsi0.b3', digestAlgorithm: 'blake3', digestOfDigests: 'cd'.repeat(32) }],
    ingest: { tool: 'vzdump-zfs test', at: 0, seconds: 0, clustersUnchanged: 0, blocksWritten: 0 },
  };
}

test('round-trips what ingest writes', () => {
  writeManifest(dir, manifest());
  expect(readManifest(dir, '100/x')).toEqual(manifest());
});

test('a disk without digestAlgorithm (written before BLAKE3) reads as sha256', () => {
  const m = manifest() as unknown as { disks: Record<string, unknown>[] };
  delete m.disks[0]!.digestAlgorithm;
  fs.writeFileSync(path.join(dir, MANIFEST_FILE), JSON.stringify(m));
  expect(readManifest(dir, '100/x').disks[0]!.digestAlgorithm).toBe('sha256');
});

test('an unknown digest algorithm is an IntegrityError naming the disk', () => {
  const m = manifest() as unknown as { disks: Record<string, unknown>[] };
  m.disks[0]!.digestAlgorithm = 'md4';
  fs.writeFileSync(path.join(dir, MANIFEST_FILE), JSON.stringify(m));
  expect(() => readManifest(dir, '100/x')).toThrow(IntegrityError);
  expect(() => readManifest(dir, '100/x')).toThrow("manifest of backup 100/x: disk 'drive-scsi0' has unknown digest algorithm 'md4'");
});

describe('a manifest that cannot be used is a one-line error naming the backup', () => {
  const write = (text: string) => fs.writeFileSync(path.join(dir, MANIFEST_FILE), text);
  const failure = (): Error => {
    try {
      readManifest(dir, '100/x');
    } catch (e) {
      return e as Error;
    }
    throw new Error('readManifest accepted the manifest');
  };

  test('missing', () => {
    const e = failure();
    expect(e).toBeInstanceOf(IoError);
    expect(e.message).toMatch(/^backup 100\/x has no readable manifest 'vzdump-zfs\.json': ENOENT/);
    expect(e.message).not.toContain('\n');
  });

  test('not JSON (a truncated file)', () => {
    write(JSON.stringify(manifest()).slice(0, 40));
    const e = failure();
    expect(e).toBeInstanceOf(IntegrityError);
    expect(e.message).toMatch(/^manifest of backup 100\/x is not valid JSON: /);
    expect(e.message).not.toContain('\n');
  });

  test('another layout version', () => {
    write(JSON.stringify({ ...manifest(), format: '9.0' }));
    expect(failure().message).toBe(`manifest of backup 100/x has layout version 9.0, this tool reads ${MANIFEST_FORMAT}`);
  });

  test('no disk or config list', () => {
    const m = manifest() as unknown as Record<string, unknown>;
    delete m.disks;
    write(JSON.stringify(m));
    expect(failure()).toBeInstanceOf(IntegrityError);
    expect(failure().message).toBe('manifest of backup 100/x lacks its config or disk list');
    write(JSON.stringify({ ...manifest(), configs: 'qemu-server.conf' }));
    expect(failure().message).toBe('manifest of backup 100/x lacks its config or disk list');
  });
});
