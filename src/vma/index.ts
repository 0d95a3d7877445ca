/**
 * The VMA codec's public surface (vma-format.md): the streaming reader and writer, the pure
 * header/extent/blob codec underneath them, name and size helpers, and the record types.
 * Re-exports only; no logic here.
 */
export * from './types';
export { readVma, expandCluster, type ReadVmaOptions } from './reader';
export { writeVma, type WriteVmaOptions } from './writer';
export { assertSafeName, clusterCount } from './names';
export {
  checkHeaderMagic,
  decodeHeader,
  encodeHeader,
  headerMd5,
  readHeaderSize,
  type VmaHeaderInput,
} from './header';
export {
  blocksAnnounced,
  decodeExtentHeader,
  encodeExtentHeader,
  extentByteSize,
  extentHeaderMd5,
  popcount16,
  type BlockInfo,
  type ExtentHeader,
} from './extent';
export { BlobTableBuilder, decodeBlobString, encodeBlobString, parseBlobBuffer } from './blobs';
export { ClusterSet } from './clusters';
export * as vmaConstants from './constants';
