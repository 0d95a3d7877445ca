/**
 * `vma extract -r` map lines, in the forms qemu-server's restore_vma_archive writes and vma.c reads.
 */
import { UsageError } from '../../src/errors';
import { parseMap, parseMapLine } from '../../src/cli/vma-map';

const W = "map 'm'";

describe('parseMapLine', () => {
  test('what qmrestore writes: format, zero flag, devname and path', () => {
    expect(parseMapLine('format=raw:1:drive-scsi0=/dev/zvol/rpool/data/vm-101-disk-0', W)).toEqual({
      devname: 'drive-scsi0',
      path: '/dev/zvol/rpool/data/vm-101-disk-0',
      writeZero: true,
      format: 'raw',
      options: {},
    });
    expect(parseMapLine('0:drive-efidisk0=/var/lib/vz/images/101/vm-101-disk-1.raw', W)).toEqual({
      devname: 'drive-efidisk0',
      path: '/var/lib/vz/images/101/vm-101-disk-1.raw',
      writeZero: false,
      options: {},
    });
  });

  test('throttling and cache options in any order before the zero flag; a path may hold = and :', () => {
    expect(parseMapLine('throttling.bps=1048576:format=raw:throttling.group=g1:cache=none:1:drive-virtio1=/a=b:c', W)).toEqual({
      devname: 'drive-virtio1',
      path: '/a=b:c',
      writeZero: true,
      format: 'raw',
      options: { 'throttling.bps': '1048576', 'throttling.group': 'g1', cache: 'none' },
    });
  });

  test('skip=DEVNAME leaves a disk out', () => {
    expect(parseMapLine('skip=drive-scsi1', W)).toEqual({ devname: 'drive-scsi1', skip: true });
  });

  test('done and an empty line end the map', () => {
    expect(parseMapLine('done', W)).toBeUndefined();
    expect(parseMapLine('', W)).toBeUndefined();
  });

  test.each([
    ['format=raw:2:drive-scsi0=/x', 'parse error'],
    ['drive-scsi0=/x', 'parse error'],
    ['format=raw', "option 'format' not terminated"],
    ['format=raw:format=raw:1:drive-scsi0=/x', "duplicate value for option 'format'"],
    ['throttling.bps=fast:1:drive-scsi0=/x', "throttling.bps 'fast' is not a number"],
    ['1:/dev/sda', 'no dev name specified'],
    ['skip=', "option 'skip' has no value"],
    ['skipx', "option 'skip' has no value"],
  ])('%p is refused: %s', (line, why) => {
    let err: unknown;
    try {
      parseMapLine(line, W);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toBe(`${W}: read map failed - ${why} ('${line}')`);
  });
});

describe('parseMap', () => {
  test('stops at done, reading no further; a later line for the same disk wins', async () => {
    async function* lines() {
      yield* ['1:drive-scsi0=/a', '0:drive-scsi0=/b', 'skip=drive-sata0', 'done'];
      throw new Error('read past done');
    }
    const m = await parseMap(lines(), W);
    expect([...m.keys()]).toEqual(['drive-scsi0', 'drive-sata0']);
    expect(m.get('drive-scsi0')).toMatchObject({ path: '/b', writeZero: false });
  });
});
