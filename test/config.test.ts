import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig, validateConfig } from '../src/config';
import { ConfigError } from '../src/errors';

describe('config', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vz-config-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  function write(name: string, text: string): string {
    const p = path.join(dir, name);
    fs.writeFileSync(p, text);
    return p;
  }

  it('fills defaults for an empty file', () => {
    const cfg = loadConfig(write('empty.yaml', ''));
    expect(cfg.store).toEqual({ recordsize: '64K', lockDir: '/run/lock/vzdump-zfs' });
    expect(cfg.store.dataset).toBeUndefined();
  });

  it('reads a full config', () => {
    const p = write('full.yaml', 'store:\n  dataset: tank/vzdump backups\n  recordsize: 128K\n  compression: zstd\npve:\n  timeZone: Europe/Vienna\n');
    const cfg = loadConfig(p);
    expect(cfg.store.dataset).toBe('tank/vzdump backups');
    expect(cfg.store.recordsize).toBe('128K');
    expect(cfg.pve.timeZone).toBe('Europe/Vienna');
  });

  it.each([
    ['store:\n  recordsize: 100K\n', 'store.recordsize'],
    ['store:\n  datset: tank/x\n', 'store.datset'],
    ['storage: {}\n', 'storage'],
    ['store:\n  lockDir: relative/dir\n', 'store.lockDir'],
    ['pve:\n  timeZone: Mars/Olympus\n', 'pve.timeZone'],
    ['store:\n  dataset: /tank\n', 'store.dataset'],
  ])('names the bad key in %j', (text, key) => {
    const p = write('bad.yaml', text);
    let err: unknown;
    try {
      loadConfig(p);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).key).toBe(key);
    expect((err as Error).message).toContain(p);
    expect((err as Error).message).toContain(key.split('.').pop()!);
    expect((err as Error).message).not.toContain('\n');
  });

  it('reports YAML syntax errors with the file name on one line', () => {
    const p = write('syntax.yaml', 'store: [unclosed\n');
    expect(() => loadConfig(p)).toThrow(new RegExp(`config '${p}' is not valid YAML`));
  });

  it('fails for an explicitly named missing file but not for the missing default', () => {
    expect(() => loadConfig(path.join(dir, 'nope.yaml'))).toThrow(ConfigError);
    const saved = process.env.VZDUMP_ZFS_CONFIG;
    delete process.env.VZDUMP_ZFS_CONFIG;
    try {
      if (!fs.existsSync('/etc/vzdump-zfs/config.yaml')) expect(loadConfig().store.recordsize).toBe('64K');
    } finally {
      if (saved !== undefined) process.env.VZDUMP_ZFS_CONFIG = saved;
    }
  });

  it('validates objects as well as files', () => {
    expect(() => validateConfig({ store: { compression: 'brotli' } }, 'test')).toThrow(/store.compression/);
  });
});
