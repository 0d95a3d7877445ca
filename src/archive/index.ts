/**
 * The vzdump file around a VMA stream: archive names, compression stages and side files.
 * Re-exports ./names, ./compression, ./chunk-pool and ./sidefiles; no logic of its own.
 */
export * from './names';
export * from './compression';
export * from './chunk-pool';
export * from './sidefiles';
