import type { Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';

/** The variable for a long option: RELAY_ plus the flag in capitals, `_` for `-`. */
function envVariable(flag: string): string {
  return `RELAY_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/** The declared flags a command line gives itself, in any spelling yargs accepts. */
function flagsGiven(argv: readonly string[], declared: ReadonlySet<string>): Set<string> {
  const given = new Set<string>();
  for (const token of argv) {
    if (token === '--') break;
    if (!token.startsWith('--')) continue;
    const name = (token.slice(2).split('=')[0] ?? '').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    given.add(name);
    if (name.startsWith('no-') && declared.has(name.slice(3))) given.add(name.slice(3));
  }
  return given;
}

/**
 * Flags for the environment variables of the options a program declares (one per long
 * option, so a flag added later has its variable without further work), for the flags
 * its command line does not give itself. Every other RELAY_* variable is ignored: a
 * relay and a service share one environment, and one program's variable must not stop
 * the other as an unknown flag. An empty variable counts as unset.
 */
function envFlags(declared: readonly string[], argv: readonly string[], env: NodeJS.ProcessEnv = process.env): string[] {
  const given = flagsGiven(argv, new Set(declared));
  const flags: string[] = [];
  for (const flag of declared) {
    const value = env[envVariable(flag)];
    if (value !== undefined && value !== '' && !given.has(flag)) flags.push(`--${flag}=${value}`);
  }
  return flags;
}

/**
 * Flags with no variable. `--name`: a service's own name on the names ports, which one
 * environment shared by several services would give to all of them (all but the first
 * refused), and `RELAY_NAME` reads as the relay's name, not the service's.
 */
const NO_VARIABLE = ['name'];

/**
 * The command line to parse, with the program's own RELAY_* variables filling in: the
 * command line wins over the environment, which wins over --config and the defaults.
 * The options are read from the parser itself; `positionals` are left out, being
 * arguments, not flags.
 */
export function argvWithEnv(parser: Argv<unknown>, positionals: readonly string[]): string[] {
  const skip = new Set(['help', 'version', ...NO_VARIABLE, ...positionals]);
  const options = (parser as unknown as { getOptions(): { key: Record<string, unknown> } }).getOptions();
  const declared = Object.keys(options.key).filter((key) => !skip.has(key));
  const argv = hideBin(process.argv);
  // Before the command line's own arguments, so none of them can land after a `--`.
  return [...envFlags(declared, argv), ...argv];
}
