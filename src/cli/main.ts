/**
 * Entry point of `bin/vzdump-zfs`: builds the command tree and hands each subcommand to the
 * module that wires it. No logic of its own.
 */
import { Command, CommanderError } from 'commander';
import { registerVmaCommands } from './vma';
import { registerStoreCommands } from './store';
import { registerDemoCommand } from './demo';
import { UsageError } from '../errors';
import { quietEpipe, reportError, setJsonErrors, stoppedBySignal } from './common';

export function buildProgram(): Command {
  const program = new Command('vzdump-zfs')
    .description('incremental vzdump backup store on ZFS: one snapshot per backup')
    .version('0.1.0')
    .allowExcessArguments(false)
    // argument errors are reported by main() as one line, like every other failure
    .configureOutput({ outputError: () => undefined })
    .exitOverride();
  registerVmaCommands(program);
  registerStoreCommands(program);
  registerDemoCommand(program);
  return program;
}

/** `vzdump-zfs vma extract`: the (sub)command the arguments name, for pointing at its help. */
function commandPath(program: Command, args: string[]): string {
  const names = [program.name()];
  let cmd = program;
  for (const a of args) {
    if (a.startsWith('-')) continue;
    const sub = cmd.commands.find((c) => c.name() === a || c.aliases().includes(a));
    if (!sub) break;
    names.push(a);
    cmd = sub;
  }
  return names.join(' ');
}

/** Whether the arguments ask for JSON output: then even an argument error is reported as JSON. */
function wantsJson(args: string[]): boolean {
  return args.some((a, i) => /^--output-format=json/.test(a) || (a === '--output-format' && /^json/.test(args[i + 1] ?? '')));
}

export async function main(argv: string[]): Promise<void> {
  // a reader that goes away (`| head`) ends the command quietly instead of with an EPIPE stack
  // trace; where stdout is an archive, the command's own write fails instead and cleans up
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    if (quietEpipe()) process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
  });
  const program = buildProgram();
  setJsonErrors(wantsJson(argv.slice(2)));
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') {
        // help asked for (exit 0), or shown because no command was given (an error)
        process.exitCode = err.exitCode === 0 ? 0 : 2;
      } else {
        const what = err.message.replace(/^error: /, '').replace(/\.$/, '');
        process.exitCode = reportError(new UsageError(`${what} - see '${commandPath(program, argv.slice(2))} --help'`));
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
