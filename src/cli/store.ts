/**
 * `vzdump-zfs ingest|restore|list|notes|protect|forget|prune|verify`: the store commands.
 * Wiring only: options -> config -> BackupStore -> ingest/restore/prune -> output formatting.
 */
import { Command, Option } from 'commander';
import * as path from 'node:path';
import { DEFAULT_CONFIG_PATH, loadConfig, type Config } from '../config';
import { NotFoundError, UsageError, VzError } from '../errors';
import { catalogTime, isVmaFileName, parseArchiveName, vmaCompressionFromFileName, type Compression } from '../archive/names';
import { Zfs, datasetNameProblem } from '../store/zfs';
import { BackupStore, type BackupInfo } from '../store/store';
import { pruneMark, validateKeepOptions, type KeepOptions, type PruneResult } from '../store/prune';
import { checkIngestInput, ingestArchive } from '../ingest/ingest';
import { restoreBackup } from '../restore/restore';
import { verifyBackup } from '../restore/verify';
import { localParts } from '../util/localtime';
import { hasTimestampShape, timestampProblem } from '../util/timestamp';
import { humanBytes } from '../util/format';
import { notesFirstLine } from '../archive/sidefiles';
import {
  Progress,
  action,
  formatTable,
  makeLogger,
  parseOutputFormat,
  parseThreads,
  parseTimeZoneOption,
  printJson,
  stdoutCarriesData,
  withStopSignals,
  type Logger,
  type OutputFormat,
} from './common';

interface StoreOpts {
  dataset?: string;
  config?: string;
  tz?: string;
  quiet?: boolean;
  verbose?: boolean;
}

interface Context {
  cfg: Config;
  store: BackupStore;
  log: Logger;
  timeZone?: string;
}

async function openStore(o: StoreOpts): Promise<Context> {
  const tz = parseTimeZoneOption(o.tz);
  const cfg = loadConfig(o.config);
  const log = makeLogger(o);
  const root = o.dataset ?? cfg.store.dataset;
  if (!root) {
    const file = o.config ?? process.env.VZDUMP_ZFS_CONFIG ?? DEFAULT_CONFIG_PATH;
    throw new UsageError(`no store dataset: set store.dataset in the config ('${file}') or pass --dataset ROOT`);
  }
  // a bad --dataset is a usage error; a bad store.dataset is the config's (BackupStore says so)
  const badName = o.dataset !== undefined ? datasetNameProblem(o.dataset) : undefined;
  if (badName) throw new UsageError(`invalid store dataset '${root}' - ${badName}`);
  const zfs = new Zfs({ onCommand: (argv) => log.debug(`run: ${argv.join(' ')}`) });
  const store = new BackupStore(zfs, root, { recordsize: cfg.store.recordsize, compression: cfg.store.compression, lockDir: cfg.store.lockDir });
  await store.checkRoot();
  return { cfg, store, log, timeZone: tz ?? cfg.pve.timeZone };
}

function withStoreOptions(cmd: Command): Command {
  return cmd
    .option('--dataset <ROOT>', 'root dataset of the store (config: store.dataset)')
    .option('--config <FILE>', `config file (default ${DEFAULT_CONFIG_PATH})`)
    .option('--tz <ZONE>', 'time zone of the PVE node that named the archives (config: pve.timeZone)')
    .option('-q, --quiet', 'print only results and errors')
    .option('-v, --verbose', 'also print every zfs command');
}

function parseVmid(v: string): number {
  if (!/^[1-9]\d{2,8}$/.test(v)) throw new UsageError(`invalid guest id '${v}' - expected a number from 100 to 999999999`);
  return Number(v);
}

/** `--vmid`, when given. */
function optionalVmid(v: string | undefined): number | undefined {
  return v === undefined ? undefined : parseVmid(v);
}

/** A backup named on the command line: its time, or the exact name of the archive it was stored from. */
type BackupRef = { timestamp: string; archive?: undefined } | { archive: string };

/** TIMESTAMP as YYYY_MM_DD-HH_MM_SS, or the original archive file name; checked before the store is opened. */
function parseBackupRef(v: string, vmid: number): BackupRef {
  const bad = timestampProblem(v);
  if (bad === undefined) return { timestamp: v };
  // the timestamp's shape with a field out of range: say which
  if (hasTimestampShape(v)) throw new UsageError(`invalid backup time '${v}' - ${bad}`);
  const archive = path.basename(v);
  // what ingest accepts as a name: a VMA archive
  if (!isVmaFileName(archive)) {
    throw new UsageError(`invalid backup time '${v}' - expected YYYY_MM_DD-HH_MM_SS or the archive name`);
  }
  let parsed;
  try {
    parsed = parseArchiveName(archive);
  } catch {
    parsed = undefined; // a non-standard name: only the store knows which backup it is
  }
  if (parsed && parsed.vmid !== vmid) throw new UsageError(`archive name '${v}' does not name a backup of guest ${vmid}`);
  return { archive };
}

/**
 * The backup time a reference stands for: the backup stored from exactly that archive name (as
 * PVE names a backup by its file). `found`: the backup, when finding it took a listing anyway.
 */
async function resolveBackupRef(ctx: Context, vmid: number, ref: BackupRef): Promise<{ timestamp: string; found?: BackupInfo }> {
  if (ref.archive === undefined) return { timestamp: ref.timestamp };
  const found = (await ctx.store.list(vmid)).find((b) => b.archive === ref.archive);
  if (found) return { timestamp: found.timestamp, found };
  throw new NotFoundError(`no backup of guest ${vmid} was stored from an archive named '${ref.archive}'`, 'backup', `${vmid}/${ref.archive}`);
}

function formatTime(epoch: number, tz?: string): string {
  const p = localParts(epoch, tz);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${p.year}-${two(p.month)}-${two(p.day)} ${two(p.hour)}:${two(p.minute)}:${two(p.second)}`;
}

/** The backups as PVE sees them: ctime from a standard name in the node's zone; `standard` false for renamed ones. */
async function catalogList(ctx: Context, vmid: number | undefined): Promise<Array<BackupInfo & { standard: boolean }>> {
  return (await ctx.store.list(vmid)).map((b) => ({ ...b, ...catalogTime(b, ctx.timeZone) }));
}

function backupJson(b: BackupInfo) {
  return {
    archive: b.archive,
    vmid: b.vmid,
    subtype: b.subtype,
    ctime: b.ctime,
    size: b.size,
    notes: b.notes,
    protected: b.protected,
    timestamp: b.timestamp,
    snapshot: b.snapshot,
  };
}

function keepFromOptions(o: Record<string, unknown>): KeepOptions {
  const keep: KeepOptions = {};
  const names = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
  for (const n of names) {
    const key = `keep${n[0]!.toUpperCase()}${n.slice(1)}`;
    const v = o[key];
    if (v === undefined) continue;
    if (typeof v !== 'string' || !/^\d+$/.test(v)) throw new UsageError(`--keep-${n} needs a whole number >= 0, got '${String(v)}'`);
    keep[`keep-${n}`] = Number(v);
  }
  if (o.keepAll) keep['keep-all'] = true;
  return validateKeepOptions(keep);
}

export function registerStoreCommands(program: Command): void {
  withStoreOptions(
    program
      .command('ingest')
      .description('store a vzdump VMA archive as one snapshot (only changed blocks are written)')
      .argument('<ARCHIVE>', '.vma, .vma.zst, .vma.lzo or .vma.gz file')
      .option('--vmid <N>', 'guest id, for archives without a standard vzdump name')
      .option('--time <YYYY_MM_DD-HH_MM_SS>', 'backup time, for archives without a standard vzdump name'),
  ).action(
    action(async (archive: string, o: StoreOpts & { vmid?: string; time?: string }) => {
      const vmid = optionalVmid(o.vmid);
      checkIngestInput({ archive, vmid, timestamp: o.time }); // bad input is reported before zfs is asked anything
      const ctx = await openStore(o);
      return withStopSignals(ctx.log, 'stopping and rolling the guest back', async (signal) => {
        ctx.log.info(`ingesting '${path.basename(archive)}' into store '${ctx.store.root}'`);
        const progress = new Progress(`ingest '${path.basename(archive)}'`);
        const r = await ingestArchive(ctx.store, {
          archive,
          vmid,
          timestamp: o.time,
          timeZone: ctx.timeZone,
          signal,
          onProgress: (p) => progress.update(p.clusters, p.totalClusters),
          onWarning: (m) => ctx.log.warn(m),
        }).finally(() => progress.done());
        const b = r.backup;
        if (signal.aborted) ctx.log.warn(`the stop came after the backup was committed: '${b.archive}' is stored`);
        if (r.status === 'already-stored') {
          process.stdout.write(`backup ${b.vmid}/${b.timestamp} ('${b.archive}') is already stored as '${b.snapshot}'\n`);
          return 0;
        }
        const s = r.stats!;
        process.stdout.write(
          `stored '${b.archive}' as '${b.snapshot}': ${humanBytes(s.diskBytes)} of disk, ` +
            `${s.clustersWritten} of ${s.clusters} 64 KiB clusters changed (${s.clustersUnchanged} unchanged by digest), ` +
            `${s.blocksWritten} 4 KiB blocks written (${humanBytes(s.bytesWritten)}${s.clustersRewritten > 0 ? `; ${s.clustersRewritten} clusters written whole` : ''}), ${s.seconds.toFixed(1)} s\n`,
        );
        return 0;
      });
    }),
  );

  withStoreOptions(
    program
      .command('restore')
      .description('rebuild a standard VMA archive from a stored backup')
      .argument('<VMID>')
      .argument('<TIMESTAMP>', 'YYYY_MM_DD-HH_MM_SS or the archive name')
      .requiredOption('-o, --output <FILE>', "output file; its extension picks the compression (.vma, .vma.zst, .vma.lzo, .vma.gz); '-' = stdout")
      .addOption(new Option('--compress <C>', "compression for '-o -'").choices(['none', 'zst', 'lzo', 'gz']))
      .option('--threads <N>', 'compressor threads', '1'),
  ).action(
    action(async (vmidArg: string, ts: string, o: StoreOpts & { output: string; compress?: Compression; threads: string }) => {
      const vmid = parseVmid(vmidArg);
      const ref = parseBackupRef(ts, vmid);
      if (o.output !== '-' && o.compress !== undefined) throw new UsageError(`--compress is for '-o -' only: the extension of '${o.output}' picks the compression`);
      const compression: Compression = o.output === '-' ? (o.compress ?? 'none') : vmaCompressionFromFileName(o.output);
      const threads = parseThreads(o.threads);
      if (o.output === '-') stdoutCarriesData();
      const ctx = await openStore(o);
      const { timestamp } = await resolveBackupRef(ctx, vmid, ref);
      const r = await withStopSignals(ctx.log, 'stopping and removing the partial output', (signal) =>
        restoreBackup(ctx.store, { vmid, timestamp, output: o.output, compression, threads, signal }),
      );
      ctx.log.info(`restored ${vmid}/${timestamp} to '${o.output}': ${humanBytes(r.bytes)} in ${r.seconds.toFixed(1)} s`);
    }),
  );

  withStoreOptions(
    program
      .command('list')
      .description('list stored backups (the snapshots are the catalog)')
      .option('--vmid <N>', 'only this guest')
      .option('--output-format <F>', 'text, json or json-pretty', 'text')
      .option('-H', 'no header, fields separated by a single tab')
      .option('-p', 'exact numbers (bytes, epoch seconds)'),
  ).action(
    action(async (o: StoreOpts & { vmid?: string; outputFormat: string; H?: boolean; p?: boolean }) => {
      const format: OutputFormat = parseOutputFormat(o.outputFormat);
      const vmid = optionalVmid(o.vmid);
      const ctx = await openStore(o);
      const list = await catalogList(ctx, vmid);
      list.sort((a, b) => a.vmid - b.vmid || a.ctime - b.ctime);
      if (format !== 'text') {
        printJson(list.map(backupJson), format);
        return;
      }
      const rows = list.map((b) => [
        String(b.vmid),
        o.p ? String(b.ctime) : formatTime(b.ctime, ctx.timeZone),
        o.p ? String(b.size) : humanBytes(b.size),
        b.protected ? '1' : '0',
        b.archive,
        notesFirstLine(b.notes),
      ]);
      process.stdout.write(formatTable(['VMID', 'TIME', 'SIZE', 'PROTECTED', 'ARCHIVE', 'NOTES'], rows, { noHeader: o.H }));
    }),
  );

  withStoreOptions(
    program
      .command('notes')
      .description('show or set the notes of a backup')
      .argument('<VMID>')
      .argument('<TIMESTAMP>')
      .argument('[TEXT]', "new notes ('' clears them)"),
  ).action(
    action(async (vmidArg: string, ts: string, text: string | undefined, o: StoreOpts) => {
      const vmid = parseVmid(vmidArg);
      const ref = parseBackupRef(ts, vmid);
      const ctx = await openStore(o);
      const { timestamp, found } = await resolveBackupRef(ctx, vmid, ref);
      if (text === undefined) {
        const b = found ?? (await ctx.store.get(vmid, timestamp));
        if (b.notes) process.stdout.write(b.notes + '\n');
        return;
      }
      await ctx.store.setNotes(vmid, timestamp, text);
    }),
  );

  withStoreOptions(
    program
      .command('protect')
      .description('protect a backup from forget and prune (or lift the protection with --off)')
      .argument('<VMID>')
      .argument('<TIMESTAMP>')
      .option('--off', 'remove the protection'),
  ).action(
    action(async (vmidArg: string, ts: string, o: StoreOpts & { off?: boolean }) => {
      const vmid = parseVmid(vmidArg);
      const ref = parseBackupRef(ts, vmid);
      const ctx = await openStore(o);
      const { timestamp } = await resolveBackupRef(ctx, vmid, ref);
      await ctx.store.setProtected(vmid, timestamp, !o.off);
    }),
  );

  withStoreOptions(
    program.command('forget').description('delete a backup (refused while it is protected)').argument('<VMID>').argument('<TIMESTAMP>'),
  ).action(
    action(async (vmidArg: string, ts: string, o: StoreOpts) => {
      const vmid = parseVmid(vmidArg);
      const ref = parseBackupRef(ts, vmid);
      const ctx = await openStore(o);
      const { timestamp } = await resolveBackupRef(ctx, vmid, ref);
      await ctx.store.forget(vmid, timestamp);
      ctx.log.info(`removed backup ${vmid}/${timestamp}`);
    }),
  );

  withStoreOptions(
    program
      .command('prune')
      .description("remove backups by PVE's prune-backups rules (keep-last, keep-daily, ...)")
      .option('--vmid <N>', 'only this guest')
      .option('--keep-all', 'keep everything')
      .option('--keep-last <N>')
      .option('--keep-hourly <N>')
      .option('--keep-daily <N>')
      .option('--keep-weekly <N>')
      .option('--keep-monthly <N>')
      .option('--keep-yearly <N>')
      .option('--dry-run', 'only show what would be removed')
      .option('--output-format <F>', 'text, json or json-pretty', 'text'),
  ).action(
    action(async (o: StoreOpts & Record<string, unknown> & { vmid?: string; dryRun?: boolean; outputFormat: string }) => {
      const format = parseOutputFormat(o.outputFormat);
      const keep = keepFromOptions(o);
      const vmid = optionalVmid(o.vmid);
      const ctx = await openStore(o);
      const list = await catalogList(ctx, vmid);
      const byId = new Map(list.map((b) => [`${b.vmid}/${b.timestamp}`, b]));
      const marks: PruneResult[] = pruneMark(
        list.map((b) => ({ id: `${b.vmid}/${b.timestamp}`, vmid: b.vmid, type: 'qemu' as const, ctime: b.ctime, protected: b.protected, standardName: b.standard })),
        keep,
        { timeZone: ctx.timeZone },
      );
      const failures: string[] = [];
      if (!o.dryRun) {
        for (const m of marks) {
          if (m.mark !== 'remove') continue;
          const b = byId.get(m.id)!;
          try {
            await ctx.store.forget(b.vmid, b.timestamp);
          } catch (e) {
            failures.push(`${m.id}: ${(e as Error).message}`);
          }
        }
      }
      if (format !== 'text') {
        printJson(
          marks.map((m) => {
            const b = byId.get(m.id)!;
            return { archive: b.archive, vmid: b.vmid, ctime: b.ctime, mark: m.mark, timestamp: b.timestamp };
          }),
          format,
        );
      } else {
        const rows = marks.map((m) => {
          const b = byId.get(m.id)!;
          return [String(b.vmid), formatTime(b.ctime, ctx.timeZone), m.mark, b.archive];
        });
        process.stdout.write(formatTable(['VMID', 'TIME', 'MARK', 'ARCHIVE'], rows));
      }
      if (failures.length > 0) {
        for (const f of failures) ctx.log.warn(f);
        throw new VzError(`error pruning backups - ${failures.length} could not be removed`);
      }
    }),
  );

  withStoreOptions(
    program
      .command('verify')
      .description('re-read a backup and check every disk cluster and config against the digests recorded at ingest')
      .argument('<VMID>')
      .argument('<TIMESTAMP>'),
  ).action(
    action(async (vmidArg: string, ts: string, o: StoreOpts) => {
      const vmid = parseVmid(vmidArg);
      const ref = parseBackupRef(ts, vmid);
      const ctx = await openStore(o);
      const { timestamp } = await resolveBackupRef(ctx, vmid, ref);
      const r = await withStopSignals(ctx.log, 'stopping', (signal) => verifyBackup(ctx.store, vmid, timestamp, { signal }));
      process.stdout.write(`backup ${vmid}/${timestamp} is intact: ${r.disks} disks, ${r.clusters} clusters, ${r.configs} configs checked\n`);
    }),
  );
}
