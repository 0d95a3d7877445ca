/** `vzdump-zfs demo`: the main job on an embedded default (see src/demo/demo.ts). Wiring only. */
import { Command } from 'commander';
import { UsageError } from '../errors';
import { runDemo } from '../demo/demo';
import { parseSize } from '../util/format';
import { action } from './common';

function diskSizeArg(v: string): number {
  const n = parseSize(v);
  if (n === undefined) throw new UsageError(`invalid size '${v}' - expected e.g. 8G, 512M or a byte count`);
  return n;
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('generate a week of VM backups, ingest them into a throwaway pool, restore the last one and show the savings')
    .option('--dataset <ROOT>', 'use this existing store root instead of a throwaway file-backed pool (it must not hold guest 100; the demo removes its guest 100 afterwards)')
    .option('--days <N>', 'daily backups to generate', '7')
    .option('--disk-size <SIZE>', 'size of the guest disk', '1G')
    .option('--change <PERCENT>', 'share of disk blocks changed per day', '2')
    .option('--recordsize <SIZE>', 'recordsize of the guest dataset', '64K')
    .option('--work-dir <DIR>', 'make the work directory (pool file, archives) in DIR instead of the temp dir')
    .option('--keep', 'keep pool, guest dataset, archives and work directory')
    .action(
      action(async (o: { dataset?: string; days: string; diskSize: string; change: string; recordsize: string; workDir?: string; keep?: boolean }) => {
        const days = Number(o.days);
        if (!Number.isInteger(days) || days < 1 || days > 365) throw new UsageError(`--days must be 1..365, got '${o.days}'`);
        const change = Number(o.change);
        if (!(change >= 0 && change <= 50)) throw new UsageError(`--change must be a percentage from 0 to 50, got '${o.change}'`);
        const diskSize = diskSizeArg(o.diskSize);
        if (diskSize < 64 << 20 || diskSize % 4096 !== 0) throw new UsageError(`--disk-size must be at least 64M and a multiple of 4K`);
        await runDemo({
          dataset: o.dataset,
          workDir: o.workDir,
          days,
          diskSize,
          changeRate: change / 100,
          keep: !!o.keep,
          recordsize: o.recordsize,
          log: (m) => process.stderr.write(`${m}\n`),
          out: (t) => process.stdout.write(t),
        });
      }),
    );
}
