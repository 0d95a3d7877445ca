/**
 * The side files vzdump and PVE keep beside an archive (vma-format.md §7, pve-integration.md §6.1):
 * `<basename>.log` (the vzdump task log, name without the `.vma…` extension), `<archive>.notes`
 * (UTF-8 notes) and `<archive>.protected` (an empty marker).
 *
 * Owns: locating and reading them. Leaves name rules to ./names.ts.
 * Guarantees: a missing side file is `undefined`, never an error; any other read failure is an
 * IoError naming the file. Notes are decoded as UTF-8 (invalid bytes become U+FFFD) and returned
 * whole; PVE's listings show only their first line.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IoError } from '../errors';
import { logFileName, notesFileName } from './names';

export interface SideFilePaths {
  log: string;
  notes: string;
  protected: string;
}

export interface SideFiles {
  /** path of the .log file when it exists */
  logPath?: string;
  /** contents of the .log file (UTF-8) when it exists */
  log?: string;
  notesPath?: string;
  notes?: string;
  protected: boolean;
}

/** Where PVE keeps the side files of `archivePath` (throws ArchiveNameError for a non-vzdump name). */
export function sideFilePaths(archivePath: string): SideFilePaths {
  const dir = path.dirname(archivePath);
  const base = path.basename(archivePath);
  return {
    log: path.join(dir, logFileName(base)),
    notes: path.join(dir, notesFileName(base)),
    protected: path.join(dir, `${base}.protected`),
  };
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await fs.promises.readFile(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') return undefined;
    throw new IoError(`'${file}': cannot read - ${e.message}`, file, { cause: err });
  }
}

/** Find and read the `.log`, `.notes` and `.protected` files beside `archivePath`. */
export async function readSideFiles(archivePath: string): Promise<SideFiles> {
  const p = sideFilePaths(archivePath);
  const [log, notes, prot] = await Promise.all([
    readIfExists(p.log),
    readIfExists(p.notes),
    fs.promises.stat(p.protected).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return false;
        throw new IoError(`'${p.protected}': cannot stat - ${err.message}`, p.protected, { cause: err });
      },
    ),
  ]);
  const res: SideFiles = { protected: prot };
  if (log !== undefined) {
    res.logPath = p.log;
    res.log = log;
  }
  if (notes !== undefined) {
    res.notesPath = p.notes;
    res.notes = notes;
  }
  return res;
}

/**
 * First line of the notes, as PVE's backup listing shows them, for one table cell: a CRLF's `\r`
 * goes, and tabs and other control characters become spaces (a tab would split a `-H` row).
 */
export function notesFirstLine(notes: string): string {
  const i = notes.indexOf('\n');
  const line = i < 0 ? notes : notes.slice(0, i);
  return line.replace(/\r$/, '').replace(/[\x00-\x1f\x7f]/g, ' ');
}
