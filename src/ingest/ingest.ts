/**
 * Ingests one vzdump VMA archive into the store in a single streaming pass:
 * file -> decompressor -> VMA reader -> per-disk block sync -> configs, log, manifest -> snapshot.
 *
 * Owns the order of writes inside a guest dataset (disk data first, then configs and the log, then
 * the manifest, and last the snapshot that makes the backup exist) and the mapping from archive
 * names to guest and timestamp. Leaves locking, crash recovery, rollback and snapshot properties
 * to the store (BackupStore.beginWrite / commit / abort), the data pass (records into disk images)
 * to ./sync-disks.ts, decompression to src/archive, and format validation to src/vma. Guarantees: a failure anywhere leaves the guest exactly at its last
 * snapshot (or without a dataset when this ingest created it); the same archive twice gives one
 * backup. Memory is bounded by one VMA extent plus the digest page cache, whatever the disk size.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArchiveNameError, ConflictError, IoError, UnsafeNameError, VmaFormatError, VzError, stoppedError } from '../errors';
import { compressionFromFileName, isVmaFileName, parseArchiveName, timestampToEpoch, vmaCompressionFromFileName } from '../archive/names';
import { readSideFiles, type SideFiles } from '../archive/sidefiles';
import { assertSafeName } from '../vma/names';
import { timestampProblem } from '../util/timestamp';
import type { VmaHeader } from '../vma/types';
import { fitPropValue, type BackupInfo, type BackupStore, type GuestWrite } from '../store/store';
import { MANIFEST_FILE, MANIFEST_FORMAT, type Manifest, type ManifestConfig, type ManifestDisk, readManifest, writeManifest } from '../store/manifest';
import { diskImageName, isDiskImageName } from './disk-sync';
import { syncArchiveDisks } from './sync-disks';
import { digestFileName, isDigestFileName, loadClusterDigests } from '../store/cluster-digest';

export const LOG_FILE = 'vzdump.log';
/** the notes that came with the archive, whole (the editable notes are a snapshot property) */
export const NOTES_FILE = 'vzdump.notes';
const RESERVED_NAMES = new Set([MANIFEST_FILE, LOG_FILE, NOTES_FILE]);

export interface IngestRequest {
  /** path of the archive file */
  archive: string;
  /** for archives without a standard vzdump name */
  vmid?: number;
  timestamp?: string;
  /** IANA zone of the PVE node that named the archive (default: this process's zone) */
  timeZone?: string;
  signal?: AbortSignal;
  /** called now and then with the clusters applied so far */
  onProgress?: (p: { clusters: number; totalClusters: number }) => void;
  /** told what was stored differently from how it came (notes too long for a property) */
  onWarning?: (message: string) => void;
}

export interface IngestStats {
  seconds: number;
  archiveBytes: number;
  diskBytes: number;
  clusters: number;
  clustersUnchanged: number;
  /** clusters whose old content was read and compared (the changed ones; all when the image had no digests) */
  clustersCompared: number;
  /** changed clusters written whole without reading them (image records of 64 KiB or more) */
  clustersRewritten: number;
  /** clusters whose content changed (anything was written into them) */
  clustersWritten: number;
  /** 4 KiB blocks written (in clusters written whole, all of their blocks) */
  blocksWritten: number;
  bytesRead: number;
  bytesWritten: number;
}

export interface IngestResult {
  status: 'stored' | 'already-stored';
  backup: BackupInfo;
  stats?: IngestStats;
}

interface Target {
  vmid: number;
  timestamp: string;
  fileName: string;
  /** the file has a vzdump name, so PVE's side files (.log, .notes, .protected) may sit beside it */
  vzdumpName: boolean;
}

/** Works out guest and timestamp from the archive name (or the overrides), rejecting what we cannot ingest. */
export function ingestTarget(archivePath: string, overrides: { vmid?: number; timestamp?: string } = {}): Target {
  const fileName = path.basename(archivePath);
  let vmid = overrides.vmid;
  let timestamp = overrides.timestamp;
  let parsed: ReturnType<typeof parseArchiveName> | undefined;
  try {
    parsed = parseArchiveName(fileName);
  } catch (e) {
    if (vmid === undefined || timestamp === undefined) {
      // a vzdump name whose time is impossible: that is what to say, not that it is no vzdump name
      if (e instanceof ArchiveNameError && e.badTimestamp !== undefined && timestamp === undefined) throw e;
      if (e instanceof ArchiveNameError && isVmaFileName(fileName)) {
        throw new ArchiveNameError(`'${fileName}': not a standard vzdump name (vzdump-qemu-<vmid>-YYYY_MM_DD-HH_MM_SS.vma...) - pass --vmid and --time`, fileName, { cause: e });
      }
      throw e;
    }
    // a non-vzdump name with explicit guest and time: the extension must still say VMA
    vmaCompressionFromFileName(fileName);
  }
  if (parsed) {
    if (parsed.vmtype !== 'qemu' || parsed.format !== 'vma') {
      throw new ArchiveNameError(`'${fileName}': only VM backups in VMA format can be ingested yet, this is a ${parsed.vmtype} ${parsed.format} archive`, fileName);
    }
    vmid ??= parsed.vmid;
    timestamp ??= parsed.timestamp;
  }
  if (vmid === undefined || timestamp === undefined) {
    throw new ArchiveNameError(`'${fileName}': not a standard vzdump name (vzdump-qemu-<vmid>-YYYY_MM_DD-HH_MM_SS.vma...) - pass --vmid and --time`, fileName);
  }
  if (!Number.isInteger(vmid) || vmid < 100 || vmid > 999999999) {
    throw new ArchiveNameError(`'${fileName}': guest id ${vmid} is outside 100..999999999`, fileName);
  }
  const bad = timestampProblem(timestamp);
  if (bad) throw new ArchiveNameError(`'${fileName}': time '${timestamp}' is not a backup time - ${bad}`, fileName);
  return { vmid, timestamp, fileName, vzdumpName: parsed !== undefined };
}

function checkHeader(header: VmaHeader, fileName: string): void {
  const configNames = new Set<string>();
  for (const c of header.configs) {
    assertSafeName(c.name, `config name in '${fileName}'`);
    if (RESERVED_NAMES.has(c.name) || c.name.startsWith('disk-')) {
      throw new UnsafeNameError(`'${fileName}': config name '${c.name}' collides with a file name vzdump-zfs keeps in the guest dataset`, c.name);
    }
    if (configNames.has(c.name)) throw new VmaFormatError(`'${fileName}' holds config '${c.name}' twice`, 0, 'config_names');
    configNames.add(c.name);
  }
  const devNames = new Set<string>();
  for (const d of header.devices) {
    assertSafeName(d.name, `device name in '${fileName}'`);
    if (d.name === 'vmstate') {
      throw new VmaFormatError(`'${fileName}' holds a vmstate (RAM) stream, which vzdump-zfs does not store`, 0, 'dev_info');
    }
    if (devNames.has(d.name)) throw new VmaFormatError(`'${fileName}' declares device '${d.name}' twice`, 0, 'dev_info');
    devNames.add(d.name);
  }
}

function sha256File(p: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(p, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/** Writes a small file only when its content changed, so an unchanged config costs no new blocks. */
function writeIfChanged(p: string, data: Buffer): void {
  try {
    if (fs.readFileSync(p).equals(data)) return;
  } catch {
    /* new file */
  }
  fs.writeFileSync(p, data);
}

/**
 * The backup this archive already is, if stored. Another archive stored under the same guest and
 * time (another compression, a file of another size) is a conflict, not "already stored".
 */
async function findExisting(store: BackupStore, vmid: number, timestamp: string, fileName: string, size: number): Promise<BackupInfo | undefined> {
  let b: BackupInfo;
  try {
    b = await store.get(vmid, timestamp);
  } catch (e) {
    if (VzError.isVzError(e) && e.code === 'VZ_ERR_NOT_FOUND') return undefined;
    throw e;
  }
  if (b.archive !== fileName || b.size !== size) {
    throw new ConflictError(
      `'${fileName}' (${size} bytes): backup ${vmid}/${timestamp} is already stored from another archive ` +
        `('${b.archive}', ${b.size} bytes) - forget that backup first to store this one instead`,
      b.snapshot,
    );
  }
  return b;
}

/** Removes files of the previous backup that the new one no longer has (configs, disks, log). */
function removeStale(dir: string, keep: Set<string>, previous: Manifest | undefined): void {
  const candidates = new Set<string>();
  if (previous) {
    for (const c of previous.configs) candidates.add(c.name);
    for (const d of previous.disks) {
      candidates.add(d.image);
      candidates.add(d.digests);
    }
    if (previous.log) candidates.add(previous.log);
  }
  for (const f of fs.readdirSync(dir)) {
    if (isDiskImageName(f) || isDigestFileName(f)) candidates.add(f);
  }
  for (const f of candidates) {
    if (!keep.has(f)) fs.rmSync(path.join(dir, f), { force: true });
  }
}

/**
 * The checks of an ingest request that need no store: the archive's name (guest, time, format)
 * and that it is a regular file. ingestArchive runs them first; the CLI runs them before it asks
 * zfs anything, so bad input is reported as such even where the store is not reachable.
 */
export function checkIngestInput(req: Pick<IngestRequest, 'archive' | 'vmid' | 'timestamp'>): { target: Target; st: fs.Stats } {
  const target = ingestTarget(req.archive, req);
  let st: fs.Stats;
  try {
    st = fs.statSync(req.archive);
  } catch (e) {
    throw new IoError(`cannot read archive '${req.archive}': ${(e as Error).message}`, req.archive, { cause: e });
  }
  if (!st.isFile()) throw new IoError(`archive '${req.archive}' is not a regular file`, req.archive);
  return { target, st };
}

export async function ingestArchive(store: BackupStore, req: IngestRequest): Promise<IngestResult> {
  const { target, st } = checkIngestInput(req);
  const { vmid, timestamp, fileName } = target;
  const parsedName = target.vzdumpName;
  const ctime = timestampToEpoch(timestamp, req.timeZone);

  const before = await findExisting(store, vmid, timestamp, fileName, st.size);
  if (before) return { status: 'already-stored', backup: before };
  // read before the data pass, so an unreadable side file fails the ingest before it writes anything
  const side: SideFiles = parsedName ? await readSideFiles(req.archive) : { protected: false };
  await loadClusterDigests();

  const t0 = process.hrtime.bigint();
  const w: GuestWrite = await store.beginWrite(vmid);
  try {
    const raced = await findExisting(store, vmid, timestamp, fileName, st.size);
    if (raced) {
      await w.abort();
      return { status: 'already-stored', backup: raced };
    }
    let previous: Manifest | undefined;
    if (fs.existsSync(path.join(w.dir, MANIFEST_FILE))) previous = readManifest(w.dir, `of guest ${vmid}`);

    const { header, disks: synced } = await syncArchiveDisks(req.archive, w.dir, {
      label: fileName,
      signal: req.signal,
      onProgress: req.onProgress,
      onHeader: (h) => {
        checkHeader(h, fileName);
        // the files this backup has (also what the manifest records), the configs and our own
        const keep = new Set<string>([...RESERVED_NAMES, ...h.configs.map((c) => c.name)]);
        for (const d of h.devices) keep.add(diskImageName(d.name)).add(digestFileName(d.name));
        removeStale(w.dir, keep, previous);
      },
    });

    const stats: IngestStats = {
      seconds: 0,
      archiveBytes: st.size,
      diskBytes: 0,
      clusters: 0,
      clustersUnchanged: 0,
      clustersCompared: 0,
      clustersRewritten: 0,
      clustersWritten: 0,
      blocksWritten: 0,
      bytesRead: 0,
      bytesWritten: 0,
    };
    const disks: ManifestDisk[] = [];
    for (const { device: d, image, digests, digestAlgorithm, stats: s } of synced) {
      stats.diskBytes += d.size;
      stats.clusters += s.clusters;
      stats.clustersUnchanged += s.unchanged;
      stats.clustersCompared += s.compared;
      stats.clustersRewritten += s.rewritten;
      stats.clustersWritten += s.clustersWritten;
      stats.blocksWritten += s.blocksWritten;
      stats.bytesRead += s.bytesRead;
      stats.bytesWritten += s.bytesWritten;
      disks.push({
        id: d.id,
        name: d.name,
        size: d.size,
        image: path.basename(image),
        digests: path.basename(digests),
        digestAlgorithm,
        digestOfDigests: sha256File(digests),
      });
    }

    const configs: ManifestConfig[] = [];
    for (const c of header.configs) {
      writeIfChanged(path.join(w.dir, c.name), c.data);
      configs.push({ name: c.name, size: c.data.length, sha256: createHash('sha256').update(c.data).digest('hex') });
    }
    const log = side.log;
    if (log !== undefined) writeIfChanged(path.join(w.dir, LOG_FILE), Buffer.from(log, 'utf8'));
    else fs.rmSync(path.join(w.dir, LOG_FILE), { force: true });
    const notes = side.notes !== undefined ? side.notes.trimEnd() : undefined;
    if (notes !== undefined) writeIfChanged(path.join(w.dir, NOTES_FILE), Buffer.from(side.notes!, 'utf8'));
    else fs.rmSync(path.join(w.dir, NOTES_FILE), { force: true });
    // the property PVE's GUI shows and edits holds what fits; the file keeps the whole text
    const shown = notes !== undefined ? fitPropValue(notes) : undefined;
    if (shown?.cut) {
      req.onWarning?.(
        `notes of '${fileName}' are too long for a ZFS property: the backup's notes show their first ` +
          `${Array.from(shown.value).length} of ${Array.from(notes!).length} characters; the whole text is kept in the backup as ${NOTES_FILE}`,
      );
    }

    stats.seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      vmid,
      subtype: 'qemu',
      archive: fileName,
      timestamp,
      ctime,
      source: {
        compression: compressionFromFileName(fileName),
        size: st.size,
        uuid: header.uuid.toString('hex'),
        vmaCtime: header.ctime,
      },
      configs,
      disks,
      log: log !== undefined ? LOG_FILE : undefined,
      notes: notes !== undefined ? NOTES_FILE : undefined,
      ingest: {
        tool: 'vzdump-zfs 0.1.0',
        at: Math.floor(Date.now() / 1000),
        seconds: Math.round(stats.seconds * 1000) / 1000,
        clustersUnchanged: stats.clustersUnchanged,
        clustersWritten: stats.clustersWritten,
        blocksWritten: stats.blocksWritten,
      },
    };
    writeManifest(w.dir, manifest);
    // the last moment a stop can still undo the write; once the snapshot is taken the backup exists
    req.signal?.throwIfAborted();
    const backup = await w.commit(timestamp, {
      archive: fileName,
      ctime,
      size: st.size,
      notes: shown?.value,
      protected: side.protected,
    });
    stats.seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return { status: 'stored', backup, stats };
  } catch (caught) {
    // a stop surfaces wherever the work was (a killed decompressor, an aborted read): say what it was
    const e = req.signal?.aborted ? stoppedError(`ingest of '${fileName}'`, caught) : caught;
    try {
      await w.abort();
    } catch (abortErr) {
      const msg = e instanceof Error ? e.message : String(e);
      throw new VzError(`${msg}; rolling guest ${vmid} back also failed: ${(abortErr as Error).message}`, { cause: e });
    }
    throw e;
  }
}
