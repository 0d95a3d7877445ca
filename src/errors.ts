/**
 * Every error vzdump-zfs raises, in one file (the shape of undici's lib/core/errors.js).
 *
 * Each class has a stable `code` (the contract callers match on), typed context fields and an
 * optional `cause`. Messages follow PVE's style: one sentence, lower-case start, the object in
 * quotes, what was expected, and the likely cause when known. Lower layers throw these; only
 * `src/cli` and `src/server` turn them into exit codes, HTTP statuses and text, through
 * {@link EXIT_CODES} and {@link HTTP_STATUS}.
 */

export type VzErrorCode =
  | 'VZ_ERR'
  | 'VZ_ERR_USAGE'
  | 'VZ_ERR_CONFIG'
  | 'VZ_ERR_VMA_FORMAT'
  | 'VZ_ERR_ARCHIVE_NAME'
  | 'VZ_ERR_COMPRESSION'
  | 'VZ_ERR_UNSAFE_NAME'
  | 'VZ_ERR_ZFS'
  | 'VZ_ERR_SSH'
  | 'VZ_ERR_NOT_FOUND'
  | 'VZ_ERR_CONFLICT'
  | 'VZ_ERR_LOCKED'
  | 'VZ_ERR_IO'
  | 'VZ_ERR_INTEGRITY';

export interface VzErrorOptions {
  cause?: unknown;
}

const kVzError = Symbol.for('vzdump-zfs.error');

export class VzError extends Error {
  readonly code: VzErrorCode = 'VZ_ERR';
  readonly [kVzError] = true;

  constructor(message: string, options: VzErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'VzError';
  }

  /** Robust across copies of this module (jest module registries, bundles). */
  static isVzError(e: unknown): e is VzError {
    return typeof e === 'object' && e !== null && (e as Record<symbol, unknown>)[kVzError] === true;
  }
}

/** Wrong command-line arguments. */
export class UsageError extends VzError {
  override readonly code = 'VZ_ERR_USAGE' as const;
  constructor(message: string, options?: VzErrorOptions) {
    super(message, options);
    this.name = 'UsageError';
  }
}

/** A configuration value is missing or invalid; `key` is the JSON path of the bad key. */
export class ConfigError extends VzError {
  override readonly code = 'VZ_ERR_CONFIG' as const;
  constructor(message: string, readonly key?: string, options?: VzErrorOptions) {
    super(message, options);
    this.name = 'ConfigError';
  }
}

/**
 * The VMA byte stream breaks the format. `offset` is the byte offset in the uncompressed stream
 * where the broken structure starts; `field` names the header or extent field at fault.
 */
export class VmaFormatError extends VzError {
  override readonly code = 'VZ_ERR_VMA_FORMAT' as const;
  constructor(
    message: string,
    readonly offset: number,
    readonly field?: string,
    options?: VzErrorOptions,
  ) {
    super(message, options);
    this.name = 'VmaFormatError';
  }
}

/** A file name is not a vzdump archive name we can handle. */
export class ArchiveNameError extends VzError {
  override readonly code = 'VZ_ERR_ARCHIVE_NAME' as const;
  /** set when the name has vzdump's shape and only its time is impossible */
  readonly badTimestamp?: string;
  constructor(message: string, readonly fileName: string, options?: VzErrorOptions & { badTimestamp?: string }) {
    super(message, options);
    if (options?.badTimestamp !== undefined) this.badTimestamp = options.badTimestamp;
    this.name = 'ArchiveNameError';
  }
}

/**
 * The error of work stopped by its signal (SIGINT/SIGTERM in the CLI), whatever the stop surfaced
 * as (`cause`: an AbortError, a killed child). `what` names the work: "restore of backup 101/…".
 */
export function stoppedError(what: string, cause: unknown): VzError {
  return new VzError(`${what} was stopped`, { cause });
}

/** A compressor or decompressor child process failed (corrupt or truncated input, missing tool). */
export class CompressionError extends VzError {
  override readonly code = 'VZ_ERR_COMPRESSION' as const;
  constructor(
    message: string,
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly stderrTail: string,
    options?: VzErrorOptions,
  ) {
    super(message, options);
    this.name = 'CompressionError';
  }
}

/** A name taken from an archive (config or device) cannot safely become a file name. */
export class UnsafeNameError extends VzError {
  override readonly code = 'VZ_ERR_UNSAFE_NAME' as const;
  constructor(message: string, readonly unsafeName: string, options?: VzErrorOptions) {
    super(message, options);
    this.name = 'UnsafeNameError';
  }
}

/** A `zfs`/`zpool` command failed; `stderrTail` is what it said. */
export class ZfsCommandError extends VzError {
  override readonly code = 'VZ_ERR_ZFS' as const;
  constructor(
    message: string,
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly stderrTail: string,
    options?: VzErrorOptions,
  ) {
    super(message, options);
    this.name = 'ZfsCommandError';
  }
}

/** An SSH connection or remote command failed. */
export class SshError extends VzError {
  override readonly code = 'VZ_ERR_SSH' as const;
  constructor(
    message: string,
    readonly host: string,
    readonly exitCode: number | null = null,
    readonly stderrTail = '',
    options?: VzErrorOptions,
  ) {
    super(message, options);
    this.name = 'SshError';
  }
}

/** Something the user named does not exist (a guest, a backup, a config inside an archive). */
export class NotFoundError extends VzError {
  override readonly code = 'VZ_ERR_NOT_FOUND' as const;
  constructor(message: string, readonly kind: string, readonly id: string, options?: VzErrorOptions) {
    super(message, options);
    this.name = 'NotFoundError';
  }
}

/** The operation contradicts the current state (a protected backup, an existing target). */
export class ConflictError extends VzError {
  override readonly code = 'VZ_ERR_CONFLICT' as const;
  constructor(message: string, readonly what: string, options?: VzErrorOptions) {
    super(message, options);
    this.name = 'ConflictError';
  }
}

/** Another process holds the lock (e.g. a second ingest of the same guest). */
export class LockedError extends VzError {
  override readonly code = 'VZ_ERR_LOCKED' as const;
  constructor(message: string, readonly what: string, readonly holder?: string, options?: VzErrorOptions) {
    super(message, options);
    this.name = 'LockedError';
  }
}

/** A local file operation failed; `path` names the file. */
export class IoError extends VzError {
  override readonly code = 'VZ_ERR_IO' as const;
  constructor(message: string, readonly path: string, options?: VzErrorOptions) {
    super(message, options);
    this.name = 'IoError';
  }
}

/** Stored data does not match its recorded digest (bit rot, tampering, a broken restore). */
export class IntegrityError extends VzError {
  override readonly code = 'VZ_ERR_INTEGRITY' as const;
  constructor(message: string, readonly what: string, options?: VzErrorOptions) {
    super(message, options);
    this.name = 'IntegrityError';
  }
}

/** Process exit codes, one per error code (documented in docs/cli.md). 0 = success. */
export const EXIT_CODES: Readonly<Record<VzErrorCode, number>> = {
  VZ_ERR: 1,
  VZ_ERR_USAGE: 2,
  VZ_ERR_CONFIG: 3,
  VZ_ERR_VMA_FORMAT: 10,
  VZ_ERR_ARCHIVE_NAME: 11,
  VZ_ERR_COMPRESSION: 12,
  VZ_ERR_UNSAFE_NAME: 13,
  VZ_ERR_INTEGRITY: 14,
  VZ_ERR_ZFS: 20,
  VZ_ERR_IO: 21,
  VZ_ERR_SSH: 22,
  VZ_ERR_NOT_FOUND: 30,
  VZ_ERR_CONFLICT: 31,
  VZ_ERR_LOCKED: 32,
};

/** HTTP status per error code, for src/server. */
export const HTTP_STATUS: Readonly<Record<VzErrorCode, number>> = {
  VZ_ERR: 500,
  VZ_ERR_USAGE: 400,
  VZ_ERR_CONFIG: 500,
  VZ_ERR_VMA_FORMAT: 422,
  VZ_ERR_ARCHIVE_NAME: 400,
  VZ_ERR_COMPRESSION: 422,
  VZ_ERR_UNSAFE_NAME: 422,
  VZ_ERR_INTEGRITY: 500,
  VZ_ERR_ZFS: 500,
  VZ_ERR_IO: 500,
  VZ_ERR_SSH: 502,
  VZ_ERR_NOT_FOUND: 404,
  VZ_ERR_CONFLICT: 409,
  VZ_ERR_LOCKED: 423,
};

/** Keep the last `max` characters of a child's stderr, trimmed, for error messages. */
export function stderrTail(stderr: string, max = 2000): string {
  const t = stderr.trim();
  return t.length > max ? '…' + t.slice(t.length - max) : t;
}
