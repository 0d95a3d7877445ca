/**
 * The backup store on ZFS: one dataset per guest (`ROOT/<vmid>`), one snapshot per backup
 * (`ROOT/<vmid>@vzdump-<YYYY_MM_DD-HH_MM_SS>`), and the snapshots' user properties as the catalog.
 *
 * Owns: datasets `ROOT/<digits>`, snapshots named `vzdump-<timestamp>` on them, the temporary
 * clones under `ROOT/vzdump-zfs-tmp`, and every user property with the prefix `vzdump-zfs:`.
 * Anything else under ROOT is ignored by list() and never touched. Leaves the files inside a guest
 * dataset (disk images, manifest) to ingest/restore, retention to prune.ts, and all zfs command
 * handling to zfs.ts.
 *
 * Properties on a backup snapshot (set together with `zfs snapshot -o`, then read back and
 * verified): `vzdump-zfs:format` (layout version, '1'), `archive`, `ctime`, `size`, `notes`
 * (absent when empty), `protected` ('1', absent when off), and one `vzdump-zfs:<key>` per extra
 * BackupProps key (camelCase keys become kebab-case: `diskSizes` -> `disk-sizes`; objects are
 * stored as JSON, other values as String()). On a guest dataset: `vzdump-zfs:dirty` =
 * `<pid>@<hostname> since <epoch seconds>` while a write is in flight, and `vzdump-zfs:committed` =
 * the zfs `creation` (epoch seconds) of the last backup a write committed. Temporary clones carry
 * `vzdump-zfs:owner`.
 *
 * Value encoding: every value is stored percent-encoded (UTF-8 bytes below 0x20, 0x7f, above
 * 0x7f, and '%' itself become `%XX`; a lone '-' becomes `%2D` so it cannot read as "unset"), so
 * the stored text is printable ASCII without tabs or newlines on any zfs version, and notes keep
 * spaces, newlines and any UTF-8 exactly. Encoded values may be at most 8000 bytes (zfs's
 * limit is 8 KiB; zfs-fuse aborts above it).
 *
 * Guarantees: list() returns only complete backups (the snapshot exists with its `format` and
 * `archive` properties, which are set atomically with it); a write that dies leaves the dataset
 * marked dirty, and the next beginWrite() of that guest rolls it back to its last consistent state
 * (see undoWrite; destroys it if there is none) before writing, whatever snapshots other tools took
 * meanwhile; one
 * write per guest at a time across processes (lock file per guest in lockDir); committed
 * snapshots are never destroyed except by forget(), which refuses protected ones and ones an open
 * SnapshotView shows. forget() of a guest's last backup keeps the guest dataset: its files are the
 * base the next ingest writes only differences against (until a write to it fails).
 * Does not guarantee: that files written before commit() are flushed from page caches outside
 * ZFS (close them before committing).
 */

import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readdir, rm, truncate } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ConfigError, ConflictError, IntegrityError, LockedError, NotFoundError, UsageError, ZfsCommandError } from '../errors';
import { timestampProblem } from '../util/timestamp';
import { acquireLock, pidAlive, type Lock } from './lock';
import { datasetNameProblem, isBusy, isNotExist, isOutOfSpace, type PropRow, type Zfs } from './zfs';

// ---------------------------------------------------------------- layout constants

/** Prefix of every user property this tool owns. */
export const PROP_PREFIX = 'vzdump-zfs:';
/** Layout version written to `vzdump-zfs:format` (docs/design.md "Changes"). */
export const LAYOUT_FORMAT = '1';
/** Prefix of every snapshot name this tool owns. */
export const SNAPSHOT_PREFIX = 'vzdump-';
/** Child of ROOT that holds temporary read-only clones (never a guest: not all digits). */
export const TMP_DATASET = 'vzdump-zfs-tmp';
/** Longest encoded property value accepted (zfs allows 8 KiB). */
export const MAX_VALUE_BYTES = 8000;

const P = {
  format: `${PROP_PREFIX}format`,
  archive: `${PROP_PREFIX}archive`,
  ctime: `${PROP_PREFIX}ctime`,
  size: `${PROP_PREFIX}size`,
  notes: `${PROP_PREFIX}notes`,
  protected: `${PROP_PREFIX}protected`,
  dirty: `${PROP_PREFIX}dirty`,
  committed: `${PROP_PREFIX}committed`,
  owner: `${PROP_PREFIX}owner`,
} as const;
const RESERVED_KEYS = new Set(['format', 'archive', 'ctime', 'size', 'notes', 'protected', 'dirty', 'committed', 'owner']);

const VMID_RE = /^[1-9]\d{0,9}$/;
/**
 * How long a rollback on a full pool waits, after the live files were emptied, for the freed space
 * to show: it does once the freeing transaction group commits (OpenZFS's zfs_txg_timeout is 5 s;
 * the margin is for slow pools and older releases).
 */
const FREED_SPACE_WAIT_MS = 35000;
/** How long protect and forget wait for another one of them on the same guest (each takes a moment). */
const CATALOG_LOCK_WAIT_MS = 30000;

// ---------------------------------------------------------------- public types

export interface BackupProps {
  /** Original vzdump file name. */
  archive: string;
  /** Epoch seconds of the backup. */
  ctime: number;
  /** Bytes of the original archive. */
  size: number;
  notes?: string;
  protected?: boolean;
  /** Extra keys: letters, digits, '_' and '.', starting with a letter; stored as `vzdump-zfs:<kebab-key>`. */
  [k: string]: unknown;
}

export interface BackupInfo {
  vmid: number;
  /** YYYY_MM_DD-HH_MM_SS, as in the archive name. */
  timestamp: string;
  /** Full snapshot name. */
  snapshot: string;
  /** Guest dataset. */
  dataset: string;
  archive: string;
  ctime: number;
  size: number;
  notes: string;
  protected: boolean;
  subtype: 'qemu';
  /** zfs `creation` of the snapshot, epoch seconds. */
  created: number;
  /** Layout version the backup was written with. */
  format: string;
  /** Extra BackupProps keys given at commit, decoded, as strings (JSON for objects). */
  extra: Record<string, string>;
}

export interface GuestWrite {
  vmid: number;
  dataset: string;
  /** Mountpoint of the guest dataset: write the backup's files here. */
  dir: string;
  /** True when this write created the guest dataset. */
  created: boolean;
  /** Snapshots with all properties, clears the dirty mark, releases the lock. */
  commit(timestamp: string, props: BackupProps): Promise<BackupInfo>;
  /** Puts the dataset back to its last consistent state (see BackupStore.undoWrite), or destroys it if there is none; idempotent. */
  abort(): Promise<void>;
}

export interface SnapshotView {
  /** Directory showing the snapshot's files, read-only. Until release(), forget() of it is refused. */
  dir: string;
  /** Unmounts and destroys whatever was created for the view (or closes it); idempotent. */
  release(): Promise<void>;
}

export interface BackupStoreOptions {
  /** recordsize of new guest datasets (default '64K'; zfs-fuse's maximum is 128K). */
  recordsize?: string;
  /**
   * compression of new guest datasets; unset, they inherit the store root's (so an admin's
   * `zfs create -o compression=zstd ROOT` holds), and get `on` where that is `off`.
   */
  compression?: string;
  /** Directory for per-guest lock files (default /run/lock/vzdump-zfs). */
  lockDir?: string;
}

// ---------------------------------------------------------------- value encoding

/** Percent-encodes a property value (see module header). */
export function encodePropValue(v: string): string {
  let out = '';
  for (const b of Buffer.from(v, 'utf8')) {
    out += b < 0x20 || b >= 0x7f || b === 0x25 ? '%' + b.toString(16).toUpperCase().padStart(2, '0') : String.fromCharCode(b);
  }
  return out === '-' ? '%2D' : out;
}

/** Inverse of {@link encodePropValue}. */
export function decodePropValue(v: string): string {
  if (!v.includes('%')) return v;
  const bytes: number[] = [];
  for (let i = 0; i < v.length; i++) {
    if (v[i] === '%' && /^[0-9A-Fa-f]{2}$/.test(v.slice(i + 1, i + 3))) {
      bytes.push(parseInt(v.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(v[i], 'utf8'));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** `diskSizes` -> `disk-sizes` (zfs user property names are lower-case). */
function keyToProp(key: string): string {
  if (!/^[A-Za-z][A-Za-z0-9_.]*$/.test(key) || key.length > 200) {
    throw new UsageError(`invalid backup property name '${key}' - expected letters, digits, '_' or '.'`);
  }
  const kebab = key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
  if (RESERVED_KEYS.has(kebab)) throw new UsageError(`backup property name '${key}' is reserved`);
  return PROP_PREFIX + kebab;
}

function propToKey(prop: string): string {
  return prop.slice(PROP_PREFIX.length).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/**
 * `text` cut at a character boundary so that it fits a property value once encoded, and whether it
 * had to be cut (for text that is also kept whole elsewhere, like an archive's notes file).
 */
export function fitPropValue(text: string): { value: string; cut: boolean } {
  if (encodePropValue(text).length <= MAX_VALUE_BYTES) return { value: text, cut: false };
  const chars = Array.from(text);
  let lo = 0;
  let hi = chars.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (encodePropValue(chars.slice(0, mid).join('')).length <= MAX_VALUE_BYTES) lo = mid;
    else hi = mid - 1;
  }
  return { value: chars.slice(0, lo).join(''), cut: true };
}

function checkedValue(what: string, v: string): string {
  const enc = encodePropValue(v);
  if (enc.length > MAX_VALUE_BYTES) {
    throw new UsageError(`${what} too long: ${enc.length} bytes encoded, at most ${MAX_VALUE_BYTES}`);
  }
  return enc;
}

// ---------------------------------------------------------------- the store

export class BackupStore {
  readonly recordsize: string;
  /** undefined: inherit the root's compression unless that is off (see BackupStoreOptions) */
  readonly compression: string | undefined;
  readonly lockDir: string;
  private snapshotDashO: boolean | undefined;

  constructor(
    readonly zfs: Zfs,
    readonly root: string,
    opts: BackupStoreOptions = {},
  ) {
    const bad = datasetNameProblem(root);
    if (bad) throw new ConfigError(`invalid store dataset '${root}' - ${bad}`, 'store.dataset');
    this.recordsize = opts.recordsize ?? '64K';
    this.compression = opts.compression;
    this.lockDir = opts.lockDir ?? '/run/lock/vzdump-zfs';
  }

  /**
   * Checks that the root exists and is a store root: a file system, and no guest dataset (which
   * carries the write records); NotFoundError or UsageError otherwise. One zfs command.
   */
  async checkRoot(): Promise<void> {
    let props: Record<string, string>;
    try {
      props = await this.zfs.get(this.root, ['type', P.committed, P.dirty]);
    } catch (e) {
      if (isNotExist(e)) throw new NotFoundError(`store dataset '${this.root}' does not exist - create it with 'zfs create ${this.root}'`, 'dataset', this.root, { cause: e });
      throw e;
    }
    if (props.type !== 'filesystem') throw new UsageError(`store dataset '${this.root}' is a ${props.type}, not a file system`);
    if (props[P.committed] !== '-' || props[P.dirty] !== '-') {
      throw new UsageError(`'${this.root}' is (inside) the dataset of one guest, not a store root - pass the store's root dataset`);
    }
  }

  /** The guest's lock file name in lockDir (the write lock; `.catalog` added for protect and forget). */
  private lockName(vmid: number): string {
    return `${encodeURIComponent(this.root)}.${vmid}`;
  }

  guestDataset(vmid: number): string {
    checkVmid(vmid);
    return `${this.root}/${vmid}`;
  }

  snapshotName(timestamp: string): string {
    checkTimestamp(timestamp);
    return `${SNAPSHOT_PREFIX}${timestamp}`;
  }

  /** Full snapshot name of a backup. */
  snapshotFullName(vmid: number, timestamp: string): string {
    return `${this.guestDataset(vmid)}@${this.snapshotName(timestamp)}`;
  }

  // ------------------------------------------------------------ catalog

  /** Complete backups, sorted by vmid then timestamp; [] when the store (or guest) does not exist. */
  async list(vmid?: number): Promise<BackupInfo[]> {
    const top = vmid === undefined ? this.root : this.guestDataset(vmid);
    let rows: PropRow[];
    try {
      rows = await this.zfs.getRows([top], ['all'], { depth: vmid === undefined ? 2 : 1, sources: ['local', 'none'] });
    } catch (e) {
      if (isNotExist(e)) return [];
      throw e;
    }
    return this.parseBackups(rows).sort((a, b) => a.vmid - b.vmid || (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0));
  }

  /** One backup, or NotFoundError. */
  async get(vmid: number, timestamp: string): Promise<BackupInfo> {
    const { backup: found } = await this.readSnapshot(this.snapshotFullName(vmid, timestamp));
    if (!found) throw new NotFoundError(`backup '${vmid}/${timestamp}' not found in '${this.root}'`, 'backup', `${vmid}/${timestamp}`);
    return found;
  }

  /** One snapshot's properties (none when it does not exist) and the backup they make, if they make one. */
  private async readSnapshot(snap: string): Promise<{ rows: PropRow[]; backup: BackupInfo | undefined }> {
    let rows: PropRow[] = [];
    try {
      rows = await this.zfs.getRows([snap], ['all'], { sources: ['local', 'none'] });
    } catch (e) {
      if (!isNotExist(e)) throw e;
    }
    return { rows, backup: this.parseBackups(rows)[0] };
  }

  private parseBackups(rows: PropRow[]): BackupInfo[] {
    const bySnap = new Map<string, Map<string, string>>();
    const prefix = `${this.root}/`;
    for (const r of rows) {
      if (!r.name.startsWith(prefix)) continue;
      let m = bySnap.get(r.name);
      if (!m) {
        if (!isOwnSnapshotName(r.name.slice(prefix.length))) continue;
        m = new Map();
        bySnap.set(r.name, m);
      }
      // user properties only from the snapshot itself (snapshots inherit the dataset's)
      if (r.property.startsWith(PROP_PREFIX) && r.source !== 'local' && r.source !== 'received') continue;
      m.set(r.property, r.value);
    }
    const res: BackupInfo[] = [];
    for (const [name, props] of bySnap) {
      const info = this.toInfo(name, props);
      if (info) res.push(info);
    }
    return res;
  }

  private toInfo(name: string, props: Map<string, string>): BackupInfo | undefined {
    const format = props.get(P.format);
    const archive = props.get(P.archive);
    if (format === undefined || archive === undefined || props.get('type') !== 'snapshot') return undefined;
    const [dataset, snap] = name.split('@');
    const vmid = Number(dataset.slice(this.root.length + 1));
    const extra: Record<string, string> = {};
    for (const [k, v] of props) {
      if (!k.startsWith(PROP_PREFIX)) continue;
      const short = k.slice(PROP_PREFIX.length);
      if (!RESERVED_KEYS.has(short)) extra[propToKey(k)] = decodePropValue(v);
    }
    return {
      vmid,
      timestamp: snap.slice(SNAPSHOT_PREFIX.length),
      snapshot: name,
      dataset,
      archive: decodePropValue(archive),
      ctime: toNumber(props.get(P.ctime)),
      size: toNumber(props.get(P.size)),
      notes: props.has(P.notes) ? decodePropValue(props.get(P.notes)!) : '',
      protected: props.get(P.protected) === '1',
      subtype: 'qemu',
      created: toNumber(props.get('creation')),
      format: decodePropValue(format),
      extra,
    };
  }

  async setNotes(vmid: number, timestamp: string, notes: string): Promise<void> {
    const b = await this.get(vmid, timestamp);
    if (notes === '') await this.zfs.inherit(b.snapshot, P.notes);
    else await this.zfs.set(b.snapshot, { [P.notes]: checkedValue(`notes of backup '${vmid}/${timestamp}'`, notes) });
  }

  async setProtected(vmid: number, timestamp: string, on: boolean): Promise<void> {
    await this.withCatalogLock(vmid, async () => {
      const b = await this.get(vmid, timestamp);
      if (on) await this.zfs.set(b.snapshot, { [P.protected]: '1' });
      else await this.zfs.inherit(b.snapshot, P.protected);
    });
  }

  /** Destroys one backup's snapshot; ConflictError if protected. Keeps the guest dataset. */
  async forget(vmid: number, timestamp: string): Promise<void> {
    await this.cleanStaleClones();
    // under the catalog lock, so a backup protected after the check cannot be destroyed anyway
    await this.withCatalogLock(vmid, async () => {
      const b = await this.get(vmid, timestamp);
      if (b.protected) {
        throw new ConflictError(`backup '${vmid}/${timestamp}' is protected - remove the protection first`, b.snapshot);
      }
      try {
        await this.zfs.destroy(b.snapshot);
      } catch (e) {
        // a view is open: a clone of it exists, or (OpenZFS .zfs/snapshot) it stays "busy" past the retries
        if (isBusy(e) || (e instanceof ZfsCommandError && /dependent clones/i.test(e.stderrTail))) {
          throw new ConflictError(`backup '${vmid}/${timestamp}' is being read (restore or verify running) - try again later`, b.snapshot, { cause: e });
        }
        throw e;
      }
    });
  }

  /**
   * Runs `fn` holding the guest's catalog lock, which serialises protect and forget (a check and a
   * change each). Held for a moment only, so a taker waits for it, up to CATALOG_LOCK_WAIT_MS.
   * Ingest does not take it: its rollback never destroys a committed backup.
   */
  private async withCatalogLock<T>(vmid: number, fn: () => Promise<T>): Promise<T> {
    const lock = await acquireLock(this.lockDir, `${this.lockName(vmid)}.catalog`, { waitMs: CATALOG_LOCK_WAIT_MS }).catch((e: unknown) => {
      if (!(e instanceof LockedError)) throw e;
      throw new LockedError(`the backups of guest ${vmid} are being changed by pid ${e.holder ?? 'unknown'} (lock file in '${this.lockDir}') - try again later`, `${vmid}`, e.holder, { cause: e });
    });
    try {
      return await fn();
    } finally {
      await lock.release();
    }
  }

  // ------------------------------------------------------------ writing

  /** The compression property a new guest dataset is created with; none means it inherits the root's. */
  private async newGuestCompression(): Promise<Record<string, string>> {
    if (this.compression !== undefined) return { compression: this.compression };
    let compression = 'off';
    try {
      ({ compression } = await this.zfs.get(this.root, ['compression']));
    } catch (e) {
      if (!isNotExist(e)) throw e; // a root that does not exist yet is created with the guest, without compression of its own
    }
    return compression === 'off' ? { compression: 'on' } : {};
  }

  async beginWrite(vmid: number): Promise<GuestWrite> {
    const ds = this.guestDataset(vmid);
    const lock = await acquireLock(this.lockDir, this.lockName(vmid)).catch((e: unknown) => {
      if (!(e instanceof LockedError)) throw e;
      throw new LockedError(`guest ${vmid} is being written by pid ${e.holder ?? 'unknown'} (another ingest; lock file in '${this.lockDir}')`, `${vmid}`, e.holder, { cause: e });
    });
    try {
      // whole seconds, as zfs's `creation`: a snapshot of this second may already be the write's
      const since = Math.floor(Date.now() / 1000);
      const marker = `${process.pid}@${hostname()} since ${since}`;
      const exists = await this.recover(ds);
      let created = false;
      if (!exists) {
        // created already marked dirty: no window where it exists half-written and unmarked
        const compression = await this.newGuestCompression();
        await this.zfs.create(ds, { ...compression, recordsize: this.recordsize, [P.dirty]: marker }, { parents: true });
        created = true;
      } else {
        await this.zfs.set(ds, { [P.dirty]: marker });
      }
      let dir: string;
      try {
        dir = await this.mountedDir(ds);
      } catch (e) {
        // nothing was written yet: take back the dataset this call created, or its dirty mark (a
        // later recovery would otherwise roll back, or destroy a dataset that has no snapshot)
        await (created ? this.zfs.destroy(ds) : this.zfs.inherit(ds, P.dirty)).catch(() => undefined);
        throw e;
      }
      return new Write(this, lock, vmid, ds, dir, created, since);
    } catch (e) {
      await lock.release();
      throw e;
    }
  }

  /**
   * If `ds` is marked dirty (a write died), undoes that write (undoWrite, with the write's start
   * read from the mark). Returns whether the dataset exists (afterwards). Caller holds the lock.
   */
  private async recover(ds: string): Promise<boolean> {
    let dirty: string;
    try {
      ({ [P.dirty]: dirty } = await this.zfs.get(ds, [P.dirty]));
    } catch (e) {
      if (isNotExist(e)) return false;
      throw e;
    }
    if (dirty === '-') return true;
    // a mark without its start (written before marks recorded one): every snapshot counts as older
    const since = / since (\d+)$/.exec(dirty);
    return this.undoWrite(ds, since ? Number(since[1]) : Infinity);
  }

  /**
   * Undoes a write to `ds` that began at `since` (epoch seconds) and clears its dirty mark: rolls
   * back to the newest snapshot holding a consistent state, destroying every later one, or destroys
   * the dataset when there is none. Consistent are committed backups, and snapshots of other tools
   * (zfs-auto-snapshot, sanoid) taken after the last commit and before this write began: no write
   * ran then. Another tool's snapshot taken during any write holds half-written files, and a backup
   * snapshot without its properties was never committed: they go. Without a consistent state to go
   * back to (a first write, or every backup of the guest forgotten) the live files are of no known
   * backup and the digests no longer describe them, so the dataset goes too; the next write starts
   * from scratch. Returns whether `ds` exists.
   */
  async undoWrite(ds: string, since: number): Promise<boolean> {
    const { snaps, committed: recorded } = await this.snapshotsOf(ds);
    const isBackup = (s: { name: string }): boolean => s.name.slice(ds.length + 1).startsWith(SNAPSHOT_PREFIX);
    // A complete backup snapshot is a commit, also one whose process died before recording it:
    // a snapshot another tool took during that backup's write is older than it, and never quiet.
    // Without the committed record (a dataset from before it was kept), no other tool's snapshot counts.
    const newestBackup = [...snaps].reverse().find((s) => isBackup(s) && s.complete);
    const committed = Number.isNaN(recorded) ? NaN : Math.max(recorded, newestBackup?.created ?? -Infinity);
    const quiet = (created: number): boolean => created > committed && created < since; // NaN: never
    const target = [...snaps].reverse().find((s) => (isBackup(s) ? s.complete : quiet(s.created)));
    if (!target) {
      await this.zfs.destroy(ds, { recursive: true });
      return false;
    }
    await this.rollbackFreeingSpace(ds, target.name, target !== snaps[snaps.length - 1]);
    // record an unrecorded commit before the dirty mark goes: once that backup is forgotten, only
    // the record still says that snapshots from its write are not quiet
    if (newestBackup && !(recorded >= newestBackup.created)) await this.zfs.set(ds, { [P.committed]: String(newestBackup.created) });
    await this.zfs.inherit(ds, P.dirty);
    return true;
  }

  /**
   * `zfs rollback`, and when the pool is too full even for that (zfs-fuse refuses with "out of
   * space" where OpenZFS has slop space), first frees what the failed write allocated by deleting
   * the dataset's live files (blocks the snapshot does not share), then rolls back again. The
   * snapshot brings every file back; committed snapshots are never touched.
   */
  private async rollbackFreeingSpace(ds: string, snap: string, destroyNewer: boolean): Promise<void> {
    try {
      await this.zfs.rollback(snap, { destroyNewer });
    } catch (e) {
      if (!isOutOfSpace(e)) throw e;
      const dir = await this.mountedDir(ds);
      // largest first, truncating before unlinking: on a full pool even an unlink can fail with
      // ENOSPC until some blocks are freed, and truncating the big image frees the most. Never
      // `.zfs` (snapdir=visible): removing a directory there can destroy a snapshot.
      const names = (await readdir(dir)).filter((f) => f !== '.zfs');
      const files = await Promise.all(names.map(async (f) => ({ p: join(dir, f), st: await lstat(join(dir, f)).catch(() => undefined) })));
      files.sort((a, b) => (b.st?.size ?? 0) - (a.st?.size ?? 0));
      for (const { p, st } of files) {
        if (st?.isFile()) await truncate(p, 0).catch(() => undefined);
      }
      for (const { p } of files) await rm(p, { recursive: true, force: true }).catch(() => undefined);
      await this.zfs.rollback(snap, { destroyNewer, spaceWaitMs: FREED_SPACE_WAIT_MS });
    }
  }

  /** Snapshots of `ds`, oldest first (by createtxg order of zfs, then creation), and the dataset's `committed` record (NaN: none), in one zfs call. */
  private async snapshotsOf(ds: string): Promise<{ snaps: Array<{ name: string; complete: boolean; created: number }>; committed: number }> {
    const rows = await this.zfs.getRows([ds], ['type', 'creation', P.format, P.committed], { depth: 1 });
    const snaps = new Map<string, { name: string; complete: boolean; created: number; order: number }>();
    let committed = NaN;
    let order = 0;
    for (const r of rows) {
      if (r.name === ds && r.property === P.committed) committed = toNumber(r.value);
      if (!r.name.startsWith(`${ds}@`)) continue;
      let s = snaps.get(r.name);
      if (!s) {
        s = { name: r.name, complete: false, created: 0, order: order++ };
        snaps.set(r.name, s);
      }
      if (r.property === 'creation') s.created = toNumber(r.value);
      if (r.property === P.format && r.source === 'local') s.complete = true;
    }
    return { snaps: [...snaps.values()].sort((a, b) => a.created - b.created || a.order - b.order), committed };
  }

  /** Takes `snap` with `props` (all at once where `zfs snapshot -o` works), checks them by reading them back, and returns the backup. */
  async snapshotWithProps(snap: string, props: Record<string, string>): Promise<BackupInfo> {
    if (this.snapshotDashO !== false) {
      try {
        await this.zfs.snapshot(snap, props);
        this.snapshotDashO = true;
      } catch (e) {
        if (!(e instanceof ZfsCommandError && /invalid option 'o'/.test(e.stderrTail))) throw e;
        this.snapshotDashO = false;
      }
    }
    if (this.snapshotDashO === false) {
      // format last: a snapshot without it is not a backup, and recovery removes it
      const { [P.format]: format, ...rest } = props;
      await this.zfs.snapshot(snap);
      await this.zfs.set(snap, rest);
      await this.zfs.set(snap, { [P.format]: format });
    }
    // one read serves the check and the returned BackupInfo
    const { rows, backup } = await this.readSnapshot(snap);
    const got = new Map(rows.filter((r) => r.source === 'local').map((r) => [r.property, r.value]));
    const wrong = Object.entries(props).find(([k, v]) => got.get(k) !== v);
    if (wrong || !backup) {
      await this.zfs.destroy(snap).catch(() => undefined);
      const why = wrong
        ? `property '${wrong[0]}' reads back as '${got.get(wrong[0]) ?? '-'}', expected '${wrong[1]}'`
        : 'its properties read back but do not make a backup entry';
      throw new IntegrityError(`snapshot '${snap}': ${why}`, snap);
    }
    return backup;
  }

  /** Encodes BackupProps into snapshot user properties. */
  encodeProps(props: BackupProps): Record<string, string> {
    if (typeof props.archive !== 'string' || props.archive === '') throw new UsageError(`backup property 'archive' must be a non-empty string`);
    for (const k of ['ctime', 'size'] as const) {
      if (!Number.isSafeInteger(props[k]) || props[k] < 0) throw new UsageError(`backup property '${k}' must be a non-negative integer, got '${String(props[k])}'`);
    }
    const out: Record<string, string> = {
      [P.format]: LAYOUT_FORMAT,
      [P.archive]: checkedValue('archive name', props.archive),
      [P.ctime]: String(props.ctime),
      [P.size]: String(props.size),
    };
    if (props.notes !== undefined && props.notes !== '') out[P.notes] = checkedValue('notes', String(props.notes));
    if (props.protected) out[P.protected] = '1';
    for (const [k, v] of Object.entries(props)) {
      if (['archive', 'ctime', 'size', 'notes', 'protected'].includes(k) || v === undefined) continue;
      const s = typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v);
      if (s === '') continue; // zfs cannot store an empty value: an empty extra reads back as absent
      out[keyToProp(k)] = checkedValue(`backup property '${k}'`, s);
    }
    return out;
  }

  private async mountedDir(ds: string): Promise<string> {
    const { mountpoint, mounted } = await this.zfs.get(ds, ['mountpoint', 'mounted']);
    if (!mountpoint.startsWith('/')) {
      throw new ConfigError(`dataset '${ds}' has no usable mountpoint ('${mountpoint}') - set one on '${this.root}'`, 'store.dataset');
    }
    if (mounted !== 'yes') await this.zfs.mount(ds);
    return mountpoint;
  }

  // ------------------------------------------------------------ reading

  /** A read-only directory with the backup's files: `.zfs/snapshot` where available, else a temporary clone. */
  async openSnapshot(vmid: number, timestamp: string): Promise<SnapshotView> {
    const b = await this.get(vmid, timestamp);
    const { snapdir } = await this.zfs.features(b.dataset);
    if (snapdir !== undefined) {
      const dir = join(snapdir, this.snapshotName(timestamp));
      // kept open for the view's life: an open directory keeps the automounted snapshot busy, so
      // forget() cannot destroy it under a reader (on the clone path the clone does that)
      const pin = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY).catch(() => undefined);
      if (pin) {
        let closed = false;
        const release = async (): Promise<void> => {
          if (closed) return;
          closed = true;
          await pin.close();
        };
        return { dir, release };
      }
    }
    await this.cleanStaleClones();
    const parent = `${this.root}/${TMP_DATASET}`;
    if (!(await this.zfs.exists(parent))) {
      await this.zfs.create(parent, {}, { parents: true }).catch(async (e) => {
        if (!(await this.zfs.exists(parent))) throw e; // lost a race: fine
      });
    }
    const clone = `${parent}/${vmid}-${timestamp}-${process.pid}-${randomBytes(4).toString('hex')}`;
    await this.zfs.clone(b.snapshot, clone, { readonly: 'on', [P.owner]: `${process.pid}@${hostname()}` });
    let released = false;
    const release = async (): Promise<void> => {
      if (released) return;
      released = true;
      await this.zfs.unmount(clone).catch(() => undefined);
      await this.zfs.destroy(clone);
    };
    try {
      const dir = await this.mountedDir(clone);
      return { dir, release };
    } catch (e) {
      await release().catch(() => undefined);
      throw e;
    }
  }

  /** Destroys temporary clones whose owner process (on this host) is gone. Best effort. */
  async cleanStaleClones(): Promise<void> {
    const parent = `${this.root}/${TMP_DATASET}`;
    let rows: PropRow[];
    try {
      rows = await this.zfs.getRows([parent], [P.owner], { depth: 1 });
    } catch (e) {
      if (isNotExist(e)) return;
      throw e;
    }
    const host = hostname();
    for (const r of rows) {
      if (r.name === parent || r.source !== 'local') continue;
      const m = /^(\d+)@(.+)$/.exec(r.value);
      if (!m || m[2] !== host || pidAlive(Number(m[1]))) continue;
      await this.zfs.unmount(r.name).catch(() => undefined);
      await this.zfs.destroy(r.name).catch(() => undefined);
    }
  }
}

// ---------------------------------------------------------------- one write

class Write implements GuestWrite {
  private finished = false;

  constructor(
    private readonly store: BackupStore,
    private readonly lock: Lock,
    readonly vmid: number,
    readonly dataset: string,
    readonly dir: string,
    readonly created: boolean,
    /** when the write began (epoch seconds), as its dirty mark says */
    private readonly since: number,
  ) {}

  async commit(timestamp: string, props: BackupProps): Promise<BackupInfo> {
    if (this.finished) throw new ConflictError(`write of guest ${this.vmid} is already finished`, this.dataset);
    const snap = this.store.snapshotFullName(this.vmid, timestamp);
    const encoded = this.store.encodeProps(props);
    if (await this.store.zfs.exists(snap)) {
      throw new ConflictError(`backup '${this.vmid}/${timestamp}' already exists ('${snap}')`, snap);
    }
    const backup = await this.store.snapshotWithProps(snap, encoded);
    // committed: from here on the snapshot is a backup; the rest only ends the write. Other tools'
    // snapshots from after this one and before the next write are consistent states (undoWrite).
    await this.store.zfs.set(this.dataset, { [P.committed]: String(backup.created) });
    await this.store.zfs.inherit(this.dataset, P.dirty);
    this.finished = true;
    await this.lock.release();
    return backup;
  }

  async abort(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    try {
      await this.store.undoWrite(this.dataset, this.since);
    } finally {
      await this.lock.release();
    }
  }
}

// ---------------------------------------------------------------- helpers

function isOwnSnapshotName(rel: string): boolean {
  const at = rel.indexOf('@');
  if (at < 0) return false;
  const ds = rel.slice(0, at);
  const snap = rel.slice(at + 1);
  return VMID_RE.test(ds) && snap.startsWith(SNAPSHOT_PREFIX) && timestampProblem(snap.slice(SNAPSHOT_PREFIX.length)) === undefined;
}

function checkVmid(vmid: number): void {
  if (!Number.isSafeInteger(vmid) || !VMID_RE.test(String(vmid))) throw new UsageError(`invalid vmid '${vmid}' - expected a positive integer`);
}

function checkTimestamp(ts: string): void {
  const bad = timestampProblem(ts);
  if (bad) throw new UsageError(`invalid backup timestamp '${ts}' - ${bad}`);
}

function toNumber(v: string | undefined): number {
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : NaN;
}
