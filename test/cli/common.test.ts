/** src/cli/common.ts: stopping on SIGINT/SIGTERM through the command's own error path, and EPIPE on stdout. */
import { reportError, stdoutCarriesData, stoppedBySignal, withStopSignals, type Logger } from '../../src/cli/common';
import { EXIT_CODES, VzError } from '../../src/errors';

function quietLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, info: () => undefined, debug: () => undefined, warn: (m) => warnings.push(m) };
}

/** Runs `fn` with this process's own SIGINT/SIGTERM listeners (jest's) set aside. */
async function withoutOtherSignalListeners(fn: () => Promise<void>): Promise<void> {
  const saved = (['SIGINT', 'SIGTERM'] as const).map((sig) => [sig, process.listeners(sig)] as const);
  for (const [sig] of saved) process.removeAllListeners(sig);
  try {
    await fn();
  } finally {
    for (const [sig, ls] of saved) for (const l of ls) process.on(sig, l);
  }
}

test('no stop before any signal', () => {
  expect(stoppedBySignal()).toBe(false);
});

test.each(['SIGINT', 'SIGTERM'] as const)('%s aborts the signal the command runs with, once, and the listeners go afterwards', async (sig) => {
  await withoutOtherSignalListeners(async () => {
    const log = quietLogger();
    const result = withStopSignals(log, 'stopping and cleaning up', (signal) => new Promise<string>((resolve) => signal.addEventListener('abort', () => resolve('stopped'))));
    expect(process.listenerCount(sig)).toBe(1);
    process.emit(sig, sig);
    await expect(result).resolves.toBe('stopped');
    expect(log.warnings).toEqual([`${sig} received - stopping and cleaning up`]);
    expect(stoppedBySignal()).toBe(true);
    expect(process.listenerCount('SIGINT') + process.listenerCount('SIGTERM')).toBe(0);
  });
});

test('a command that ends by itself leaves no signal listeners and its error passes through', async () => {
  await withoutOtherSignalListeners(async () => {
    await expect(withStopSignals(quietLogger(), 'x', async () => 7)).resolves.toBe(7);
    await expect(withStopSignals(quietLogger(), 'x', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(process.listenerCount('SIGINT') + process.listenerCount('SIGTERM')).toBe(0);
  });
});

test('EPIPE on stdout is a quiet end for listings, and a one-line failure once stdout carries an archive', () => {
  const epipe = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
  const written: string[] = [];
  const spy = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    written.push(String(chunk));
    return true;
  });
  try {
    expect(reportError(epipe)).toBe(0);
    expect(written).toEqual([]);
    stdoutCarriesData();
    expect(reportError(epipe)).toBe(EXIT_CODES.VZ_ERR_IO);
    expect(written).toEqual(['vzdump-zfs: standard output was closed by its reader before the archive was complete\n']);
  } finally {
    spy.mockRestore();
  }
});

test('an error message is printed on one line: control characters in it (a newline in a file name) are escaped', () => {
  const written: string[] = [];
  const spy = jest.spyOn(process.stderr, 'write').mockImplementation((c) => (written.push(String(c)), true));
  try {
    expect(reportError(new VzError("'vzdump-qemu-100-x\ny.vma': not a standard vzdump name"))).toBe(1);
    expect(reportError(new Error('plain\tfailure'))).toBe(1);
  } finally {
    spy.mockRestore();
  }
  expect(written).toEqual(["vzdump-zfs: 'vzdump-qemu-100-x\\x0ay.vma': not a standard vzdump name\n", 'vzdump-zfs: plain\\x09failure\n']);
});
