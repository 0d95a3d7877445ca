import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { preadFull, preadFullSync, pwriteAll, pwriteAllSync, writeFully } from '../../src/util/io';
import { useTempDir } from '../helpers/tmpdir';

describe('positional I/O helpers', () => {
  const dir = useTempDir('vz-io-');

  it('pwriteAllSync and preadFullSync move whole buffers at an offset, and a read stops at the end of the file', () => {
    const file = path.join(dir(), 'f');
    const fd = fs.openSync(file, 'w+');
    try {
      const data = randomBytes(3 << 20);
      pwriteAllSync(fd, data, 1000, data.length - 1000, 5);
      expect(fs.fstatSync(fd).size).toBe(5 + data.length - 1000);
      const back = Buffer.alloc(7 + data.length);
      expect(preadFullSync(fd, back, 7, data.length, 5)).toBe(data.length - 1000);
      expect(back.subarray(7, 7 + data.length - 1000)).toEqual(data.subarray(1000));
    } finally {
      fs.closeSync(fd);
    }
  });

  it('pwriteAll and preadFull do the same on the thread pool', async () => {
    const fd = fs.openSync(path.join(dir(), 'g'), 'w+');
    try {
      const data = randomBytes(1 << 20);
      await pwriteAll(fd, data, 0, data.length, 4096);
      const back = Buffer.alloc(data.length + 100);
      expect(await preadFull(fd, back, 0, back.length, 4096)).toBe(data.length);
      expect(back.subarray(0, data.length)).toEqual(data);
    } finally {
      fs.closeSync(fd);
    }
    const full = fs.openSync('/dev/full', 'w');
    try {
      await expect(pwriteAll(full, Buffer.alloc(10), 0, 10, 0)).rejects.toThrow(/ENOSPC/);
    } finally {
      fs.closeSync(full);
    }
  });

  it('a failing write is thrown (ENOSPC from /dev/full)', async () => {
    const fd = fs.openSync('/dev/full', 'w');
    try {
      expect(() => pwriteAllSync(fd, Buffer.alloc(10), 0, 10, 0)).toThrow(/ENOSPC/);
    } finally {
      fs.closeSync(fd);
    }
    const fh = await fs.promises.open('/dev/full', 'w');
    try {
      await expect(writeFully(fh, Buffer.alloc(10), 0)).rejects.toThrow(/ENOSPC/);
    } finally {
      await fh.close();
    }
  });

  it('a write that makes no progress is an error, not an endless loop', () => {
    // the module object itself (the test's `fs` is a namespace copy whose properties cannot be redefined)
    const spy = jest.spyOn(require('node:fs') as typeof fs, 'writeSync').mockReturnValue(0);
    try {
      expect(() => pwriteAllSync(123, Buffer.alloc(10), 0, 10, 0)).toThrow('no progress writing 10 bytes at offset 0');
    } finally {
      spy.mockRestore();
    }
  });
});
