/**
 * What every CLI command shares: turning errors into one line on stderr and an exit code
 * (errors.ts EXIT_CODES), the `--output-format` option, and stderr logging levels.
 * Commands live in their own files and only wire layers together.
 */
import { EXIT_CODES, IoError, UsageError, VzError } from '../errors';
import { formatTable as layoutTable } from '../util/table';
import { isKnownTimeZone } from '../util/localtime';

export type OutputFormat = 'text' | 'json' | 'json-pretty';

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  debug(msg: string): void;
}

export function makeLogger(opts: { quiet?: boolean; verbose?: boolean } = {}): Logger {
  return {
    info: (m) => {
      if (!opts.quiet) process.stderr.write(`${m}\n`);
    },
    warn: (m) => process.stderr.write(`WARN: ${m}\n`),
    debug: (m) => {
      if (opts.verbose) process.stderr.write(`DEBUG: ${m}\n`);
    },
  };
}

export function parseOutputFormat(v: string): OutputFormat {
  if (v === 'text' || v === 'json' || v === 'json-pretty') return v;
  throw new UsageError(`invalid --output-format '${v}' - expected text, json or json-pretty`);
}

export function printJson(value: unknown, format: OutputFormat): void {
  process.stdout.write(JSON.stringify(value, null, format === 'json-pretty' ? 2 : undefined) + '\n');
}

/** Aligned text table with a header row (or tab-separated without header for -H). */
export function formatTable(header: string[], rows: string[][], opts: { noHeader?: boolean } = {}): string {
  if (opts.noHeader) return rows.map((r) => r.join('\t') + '\n').join('');
  return layoutTable({ columns: header.map((title) => ({ title })), rows, rule: false });
}

let stdoutIsData = false;
/**
 * For a command whose standard output is an archive: a reader that goes away before the end is a
 * failure (non-zero exit, partial work undone), not the quiet end it is for listings (`| head`).
 */
export function stdoutCarriesData(): void {
  stdoutIsData = true;
}
/** Whether an EPIPE on stdout should end the process quietly (see stdoutCarriesData). */
export function quietEpipe(): boolean {
  return !stdoutIsData;
}

let stopSignalled = false;
/**
 * Whether a command was stopped by SIGINT/SIGTERM: once it has cleaned up, the process must exit
 * even if a write to a stalled stdout reader is still pending (it would keep Node alive).
 */
export function stoppedBySignal(): boolean {
  return stopSignalled;
}

/**
 * Runs `fn` with a signal that SIGINT and SIGTERM trigger, after warning `onStop`, so that a long
 * command stops through its own error path (rollback, partial output removed, snapshot views
 * released) instead of dying with work half done.
 */
export async function withStopSignals<T>(log: Logger, onStop: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const handlers = (['SIGINT', 'SIGTERM'] as const).map((sig) => {
    const h = (): void => {
      log.warn(`${sig} received - ${onStop}`);
      stopSignalled = true;
      ac.abort();
    };
    process.once(sig, h);
    return [sig, h] as const;
  });
  try {
    return await fn(ac.signal);
  } finally {
    for (const [sig, h] of handlers) process.removeListener(sig, h);
  }
}

/** `--threads N`: what zstd and pigz accept. */
export function parseThreads(v: string): number {
  if (!/^[1-9]\d{0,2}$/.test(v) || Number(v) > 200) throw new UsageError(`invalid --threads '${v}' - expected a number from 1 to 200`);
  return Number(v);
}

/** `--tz ZONE`, checked before any work is done. */
export function parseTimeZoneOption(v: string | undefined): string | undefined {
  if (v !== undefined && !isKnownTimeZone(v)) throw new UsageError(`invalid --tz '${v}' - not a known IANA time zone (e.g. Europe/Vienna, UTC)`);
  return v;
}

let jsonErrors = false;
/** In JSON mode a failure is written as one `{code, message}` object on stderr. */
export function setJsonErrors(on: boolean): void {
  jsonErrors = on;
}

/** A message on one line: control characters (a newline in a file name) shown as \xNN. */
function oneLine(message: string): string {
  return message.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Print an error as one line and return the exit code it maps to. */
export function reportError(err: unknown): number {
  if (VzError.isVzError(err)) {
    if (jsonErrors) process.stderr.write(JSON.stringify({ code: err.code, message: err.message }) + '\n');
    else process.stderr.write(`vzdump-zfs: ${oneLine(err.message)}\n`);
    return EXIT_CODES[err.code] ?? 1;
  }
  const e = err as NodeJS.ErrnoException;
  const msg = e && e.message ? e.message : String(err);
  if (e && e.code === 'EPIPE') {
    if (quietEpipe()) return 0; // reader went away (`| head`)
    return reportError(new IoError('standard output was closed by its reader before the archive was complete', '-', { cause: err }));
  }
  if (jsonErrors) process.stderr.write(JSON.stringify({ code: 'VZ_ERR', message: msg }) + '\n');
  else process.stderr.write(`vzdump-zfs: ${oneLine(msg)}\n`);
  if (process.env.VZDUMP_ZFS_DEBUG && e && e.stack) process.stderr.write(e.stack + '\n');
  return 1;
}

/** Wrap a command action: run it, map failures to an exit code. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    let code: number;
    try {
      code = (await fn(...args)) ?? 0;
    } catch (err) {
      code = reportError(err);
    }
    process.exitCode = code;
  };
}

/**
 * A one-line progress display on stderr for long runs: only when stderr is a terminal, only after
 * two seconds, at most once a second; cleared when done.
 */
export class Progress {
  private readonly enabled: boolean;
  private readonly start = Date.now();
  private last = 0;
  private shown = false;
  /** `wanted` false: never shown (e.g. when -v prints the reference's own progress lines). */
  constructor(private readonly what: string, wanted = true) {
    this.enabled = wanted && !!process.stderr.isTTY;
  }
  update(done: number, total: number): void {
    if (!this.enabled || total <= 0) return;
    const now = Date.now();
    if (now - this.start < 2000 || now - this.last < 1000) return;
    this.last = now;
    this.shown = true;
    const pct = Math.floor((done * 100) / total);
    process.stderr.write(`\r${this.what}: ${pct}% (${done}/${total} clusters, ${Math.round((now - this.start) / 1000)}s)\x1b[K`);
  }
  done(): void {
    if (this.shown) process.stderr.write('\r\x1b[K');
  }
}
