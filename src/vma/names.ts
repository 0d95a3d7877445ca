/**
 * Name and size helpers for callers that turn what a VMA archive declares into files and loops:
 * a file-name safety check for config and device names, and the cluster count of a device
 * (vma-format.md §3.5, §8.9).
 *
 * Pure. The reader itself reports names exactly as the archive stores them; callers that use a
 * name as a path component (extract, ingest) must pass it through assertSafeName first.
 */
import { UnsafeNameError } from '../errors';
import { CLUSTER_SIZE } from './constants';

/** Longest name we accept as one path component, in UTF-8 bytes (NAME_MAX). */
const MAX_NAME_BYTES = 255;

function quote(name: string): string {
  // Show control characters instead of printing them into a terminal or log.
  // eslint-disable-next-line no-control-regex
  return `'${name.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)}'`;
}

/**
 * Throws UnsafeNameError unless `name` can be used as a single file-name component: not empty,
 * not `.` or `..`, no `/`, no NUL or other control characters, at most 255 UTF-8 bytes.
 * `what` names the kind of name for the message, e.g. "device name" or "config name".
 */
export function assertSafeName(name: string, what: string): void {
  let problem: string | undefined;
  if (name === '') problem = 'must not be empty';
  else if (name === '.' || name === '..') problem = `must not be '${name}'`;
  else if (name.includes('/')) problem = "must not contain '/'";
  // eslint-disable-next-line no-control-regex
  else if (/[\u0000-\u001f\u007f]/.test(name)) problem = 'must not contain NUL or control characters';
  else if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) problem = `must not be longer than ${MAX_NAME_BYTES} bytes`;
  if (problem !== undefined) throw new UnsafeNameError(`unsafe ${what} ${quote(name)} - ${problem}`, name);
}

/** Clusters of a device of `size` bytes: ceil(size / 65536) (WR `cluster_count`). */
export function clusterCount(size: number): number {
  return Math.ceil(size / CLUSTER_SIZE);
}
