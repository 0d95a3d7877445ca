/**
 * Public face of src/store: the only code in vzdump-zfs that runs `zfs`/`zpool`.
 * Re-exports only; see zfs.ts (the CLI door), pool.ts (file-backed pools, zfs-fuse), lock.ts
 * (per-guest locks) and store.ts (the backup layout: one dataset per guest, one snapshot per backup).
 */
export * from './zfs';
export * from './pool';
export * from './lock';
export * from './store';
