/** A temporary directory per test (or per describe block), removed afterwards. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Registers hooks that create a directory `<tmp>/<prefix>XXXXXX` before each test (or once, with
 * `each: false`) and remove it afterwards. Returns a getter for use inside tests.
 */
export function useTempDir(prefix: string, opts: { each?: boolean } = {}): () => string {
  let dir: string | undefined;
  const [before, after] = opts.each === false ? [beforeAll, afterAll] : [beforeEach, afterEach];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix));
  });
  after(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });
  return () => {
    if (dir === undefined) throw new Error('temp dir not created yet (use it inside tests)');
    return dir;
  };
}
