import { UnsafeNameError, VzError } from '../../src/errors';
import { assertSafeName, clusterCount } from '../../src/vma/names';

describe('assertSafeName', () => {
  test.each(['drive-scsi0', 'qemu-server.conf', 'qemu-server.fw', 'drive-tpmstate0-backup', 'vmstate', '...', '.hidden', 'a b', 'ä€'])(
    'accepts %j',
    (name) => {
      expect(() => assertSafeName(name, 'device name')).not.toThrow();
    },
  );

  test.each([
    ['', /must not be empty/],
    ['.', /must not be '\.'/],
    ['..', /must not be '\.\.'/],
    ['/', /'\/'/],
    ['../etc/passwd', /'\/'/],
    ['a/b', /'\/'/],
    ['a\0b', /control/],
    ['tab\there', /control/],
    ['nl\n', /control/],
    ['del\x7f', /control/],
    ['x'.repeat(256), /255 bytes/],
  ])('rejects %j', (name, why) => {
    let err: unknown;
    try {
      assertSafeName(name, 'config name');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UnsafeNameError);
    expect(VzError.isVzError(err)).toBe(true);
    const e = err as UnsafeNameError;
    expect(e.code).toBe('VZ_ERR_UNSAFE_NAME');
    expect(e.unsafeName).toBe(name);
    expect(e.message).toMatch(/^unsafe config name '/);
    expect(e.message).toMatch(why);
    expect(e.message).not.toMatch(/[\0\n\t\x7f]/); // control characters are escaped
  });

  test('the 255-byte limit counts UTF-8 bytes', () => {
    expect(() => assertSafeName('ä'.repeat(127), 'device name')).not.toThrow();
    expect(() => assertSafeName('ä'.repeat(128), 'device name')).toThrow(UnsafeNameError);
  });
});

describe('clusterCount', () => {
  test.each([
    [1, 1],
    [512, 1],
    [65535, 1],
    [65536, 1],
    [65537, 2],
    [512000, 8],
    [512512, 8],
    [10737418240, 163840],
    [2 ** 48, 2 ** 32],
  ])('%d bytes -> %d clusters', (size, n) => {
    expect(clusterCount(size)).toBe(n);
  });
});
