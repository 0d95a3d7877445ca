/**
 * Entry point of `bin/vzdump-zfs`: builds the command tree and hands each subcommand to the
 * module that wires it. No logic of its own.
 */
import { Command, CommanderError } from 'commander';
import { registerVmaCommands } from './vma';
import { registerStoreCommands } from './store';
import { registerDemoCommand } from './demo';
import { quietEpipe, reportError, stoppedBySignal } from './common';

export function buildProgram(): Command {
  const program = new Command('vzdump-zfs')
    .description('incremental vzdump backup store on ZFS: one snapshot per backup')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride();
  registerVmaCommands(program);
  registerStoreCommands(program);
  registerDemoCommand(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  // a reader that goes away (`| head`) ends the command quietly instead of with an EPIPE stack
  // trace; where stdout is an archive, the command's own write fails instead and cleans up
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    if (quietEpipe()) process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
  });
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed the message (and help where useful)
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') {
        process.exitCode = 0;
      } else {
        process.exitCode = 2;
      }
      return;
    }
    process.exitCode = reportError(err);
  }
  // the command cleaned up after SIGINT/SIGTERM; a write still pending to a stalled reader must not keep it alive
  if (stoppedBySignal()) process.exit(typeof process.exitCode === 'number' ? process.exitCode : 1);
}

if (require.main === module) {
  void main(process.argv);
}
