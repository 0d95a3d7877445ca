/**
 * The counts and text of `vma verify|extract|create -v`, checked against values worked out by
 * hand from PVE's vma-reader.c / vma.c, and printf's %.3g against glibc's output.
 */
import { CreateReport, formatG, ReadReport } from '../../src/cli/vma-report';

describe('formatG: printf %.3g as glibc prints it', () => {
  // each right-hand side is what glibc's printf("%.3g") printed for the left-hand double
  test.each([
    [0, '0'],
    [1, '1'],
    [100, '100'],
    [93.10344827586206, '93.1'],
    [99.95, '100'],
    [0.125, '0.125'],
    [0.5, '0.5'],
    [53.125, '53.1'],
    [38.28125, '38.3'],
    [100 / 3, '33.3'],
    [12.25, '12.2'], // an exact tie: to even
    [123.5, '124'], // an exact tie: to even
    [12.35, '12.3'], // not a tie: the double is below 12.35
    [9.995, '9.99'],
    [999.5, '1e+03'], // rounds up into the next decade
    [1234, '1.23e+03'],
    [1e-5, '1e-05'],
    [0.0001234, '0.000123'],
    [5e-324, '4.94e-324'],
    [1e300, '1e+300'],
  ])('%p -> %s', (x, s) => {
    expect(formatG(x)).toBe(s);
  });

  test('refuses what a percentage never is', () => {
    expect(() => formatG(-1)).toThrow(RangeError);
    expect(() => formatG(NaN)).toThrow(RangeError);
  });
});

describe('ReadReport', () => {
  // one disk of 64 KiB + 8 KiB: cluster 0 holds block 0 only, cluster 1 is empty and only its
  // first two blocks lie inside the device
  const disk = [{ id: 1, name: 'drive-scsi0', size: 65536 + 8192 }];

  test('progress lines on each change of the percentage, past 100 % like the reference', () => {
    const clock = [100, 100, 103];
    const r = new ReadReport(disk, () => true, () => clock.shift()!);
    expect(r.totalClusters).toBe(1); // floor(73728 / 65536)
    expect(r.cluster(1, 0, 0x0001)).toBe('progress 100% (read 65536 bytes, duration 0 sec)\n');
    expect(r.cluster(1, 1, 0x0000)).toBe('progress 200% (read 131072 bytes, duration 3 sec)\n');
    // 15 absent blocks + the 2 absent blocks inside the device = 69632 of 131072 (53.125 %);
    // the data clusters' absent blocks: 61440 of the 61440 data bytes
    expect(r.summary()).toBe('total bytes read 131072, sparse bytes 69632 (53.1%)\nspace reduction due to 4K zero blocks 100%\n');
  });

  test('no progress line while the percentage stays the same', () => {
    const big = [{ id: 1, name: 'drive-scsi0', size: 300 * 65536 }];
    const r = new ReadReport(big, () => true, () => 0);
    const lines = [];
    for (let c = 0; c < 300; c++) lines.push(r.cluster(1, c, 0xffff));
    expect(lines.filter((l) => l !== undefined)).toHaveLength(100); // 1 % … 100 %
    expect(lines[2]).toBe('progress 1% (read 196608 bytes, duration 0 sec)\n');
    expect(r.summary()).toBe(`total bytes read ${300 * 65536}, sparse bytes 0 (0%)\nspace reduction due to 4K zero blocks 0%\n`);
  });

  test('clusters of devices outside the 100 % still count as read', () => {
    const two = [...disk, { id: 2, name: 'drive-scsi1', size: 10 * 65536 }];
    const r = new ReadReport(two, (d) => d.name === 'drive-scsi0', () => 0);
    expect(r.cluster(2, 0, 0xffff)).toBe('progress 100% (read 65536 bytes, duration 0 sec)\n');
  });

  test('vmstate is not clipped at its end; no total means no progress line', () => {
    const r = new ReadReport([{ id: 1, name: 'vmstate', size: 1000 }], () => true, () => 0);
    expect(r.totalClusters).toBe(0);
    expect(r.cluster(1, 0, 0)).toBeUndefined();
    // all of it sparse, so no "space reduction" line (the reference skips it for no data)
    expect(r.summary()).toBe('total bytes read 65536, sparse bytes 65536 (100%)\n');
  });

  test('an archive without clusters', () => {
    expect(new ReadReport([], () => true).summary()).toBe('vma archive contains no image data\n');
  });
});

describe('CreateReport', () => {
  test('a first line at 0 %, then one per change of the percentage; the image lines at the end', () => {
    const r = new CreateReport([{ name: 'drive-scsi0', size: 65536 + 8192 }]);
    expect(r.begin()).toBe('progress 0% 0/73728 0\n');
    expect(r.cluster(0, 65536, 61440)).toBe('progress 88% 65536/73728 61440\n'); // floor(6553600 / 73728)
    expect(r.cluster(0, 8192, 8192)).toBe('progress 100% 73728/73728 69632\n');
    expect(r.imageLines()).toBe('image drive-scsi0: size=73728 zeros=69632 saved=4096\n');
  });

  test('zeros are counted per image, and summed in the progress line', () => {
    const r = new CreateReport([
      { name: 'drive-scsi0', size: 65536 },
      { name: 'drive-scsi1', size: 65536 },
    ]);
    expect(r.cluster(0, 65536, 4096)).toBe('progress 50% 65536/131072 4096\n');
    expect(r.cluster(1, 65536, 65536)).toBe('progress 100% 131072/131072 69632\n');
    expect(r.imageLines()).toBe('image drive-scsi0: size=65536 zeros=4096 saved=61440\nimage drive-scsi1: size=65536 zeros=65536 saved=0\n');
  });

  test('nothing to write, no progress', () => {
    expect(new CreateReport([]).begin()).toBeUndefined();
  });
});
