/**
 * The data pass of an ingest: streams one archive's records and brings every disk image in a
 * directory up to date with them, one DiskSync per device, writing only what changed.
 *
 * Owns the record loop (which device a cluster belongs to, the event-loop turns that keep the
 * decompressor running, the bound on writes in flight, stop requests) and the life of the
 * DiskSyncs it opens: on success every one is closed (digests flushed), on failure every one is
 * discarded before the error goes on. Knows nothing of ZFS, snapshots or manifests: `ingestArchive`
 * runs it inside a guest dataset, the benchmark in a plain directory to time the engine alone.
 * Memory: one VMA extent plus what the DiskSyncs hold, whatever the disk size.
 */
import { VmaFormatError } from '../errors';
import type { VmaDevice, VmaHeader } from '../vma/types';
import { clusterCount } from '../vma/names';
import { readArchiveRecords } from './archive-records';
import { DiskSync, type DiskSyncOptions, type DiskSyncStats } from './disk-sync';

/**
 * Clusters applied between two turns of the event loop: each turn lets Node read the
 * decompressor's output and finish pool writes, so decompression runs on while this thread
 * hashes (without turns the decompressor stalls on a full socket). Each turn reads all that is
 * there straight into a 4 MiB pool chunk, so turns need not be frequent. Measured with the bench's
 * engine rows (8 GiB day 3, runs alternated, 2 cores): every 4 clusters 3.15-3.58 s, 16 3.10-3.38 s
 * with 0.2 s less system time, 32 and 64 no better than 16.
 */
const YIELD_EVERY = 16;
/** clusters between two onProgress calls */
const PROGRESS_EVERY = 1024;

export interface SyncDisksOptions {
  /** the archive's name in error messages, unquoted (default: the path as given) */
  label?: string;
  signal?: AbortSignal;
  /**
   * called with the header before any disk image is opened: may check it, or tidy the directory,
   * and throws to stop the pass before anything is written
   */
  onHeader?: (header: VmaHeader) => void;
  /** called now and then with the clusters applied so far */
  onProgress?: (p: { clusters: number; totalClusters: number }) => void;
  /** passed to every DiskSync (default: each image's own block size) */
  diskSync?: DiskSyncOptions;
}

export interface SyncedDisk {
  device: VmaDevice;
  /** `disk-<name>.raw`, in the directory */
  image: string;
  /** the digest file written beside it */
  digests: string;
  digestAlgorithm: DiskSync['algorithm'];
  stats: DiskSyncStats;
}

export interface SyncDisksResult {
  header: VmaHeader;
  /** in the header's device order */
  disks: SyncedDisk[];
}

/** Reads `archive` once and syncs its disks into `dir`; throws the first error with every image closed. */
export async function syncArchiveDisks(archive: string, dir: string, opts: SyncDisksOptions = {}): Promise<SyncDisksResult> {
  const label = `'${opts.label ?? archive}'`;
  const syncs = new Map<number, DiskSync>();
  try {
    // DiskSync.apply keeps nothing of a record
    const records = readArchiveRecords(archive, { label: opts.label, signal: opts.signal });
    let header: VmaHeader | undefined;
    let totalClusters = 0;
    let applied = 0;
    let sinceYield = 0;
    let nextProgress = PROGRESS_EVERY;
    for await (const rec of records) {
      if (rec.type === 'header') {
        header = rec.header;
        opts.onHeader?.(header);
        for (const d of header.devices) {
          syncs.set(d.id, new DiskSync(dir, d.name, d.size, opts.diskSync));
          totalClusters += clusterCount(d.size);
        }
        continue;
      }
      const sync = syncs.get(rec.devId);
      if (!sync) throw new VmaFormatError(`${label}: cluster of unknown device ${rec.devId}`, 0, 'dev_id');
      sync.apply(rec);
      applied++;
      if (sync.busy) await sync.ready();
      if (++sinceYield >= YIELD_EVERY) {
        sinceYield = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
        opts.signal?.throwIfAborted();
        if (opts.onProgress && applied >= nextProgress) {
          nextProgress = applied + PROGRESS_EVERY;
          opts.onProgress({ clusters: applied, totalClusters });
        }
      }
    }
    opts.onProgress?.({ clusters: applied, totalClusters });
    if (!header) throw new VmaFormatError(`${label}: empty archive`, 0, 'magic');
    const disks: SyncedDisk[] = [];
    for (const device of header.devices) {
      const sync = syncs.get(device.id)!;
      syncs.delete(device.id);
      const stats = await sync.close();
      disks.push({ device, image: sync.imagePath, digests: sync.digestPath, digestAlgorithm: sync.algorithm, stats });
    }
    return { header, disks };
  } catch (e) {
    for (const s of syncs.values()) await s.discard();
    throw e;
  }
}
