// The grammar every `slipway` command shares: words naming the command, then positional
// arguments and flags in any order. A flag takes its value as `--flag value` or `--flag=value`;
// `--` ends the flags. Problems are collected, never thrown, so loadConfig reports them all.

export interface FlagSpec {
  /** value: one value (the last wins); list: repeatable, every value kept; switch: no value. */
  kind: 'value' | 'list' | 'switch';
  /** Environment variable giving the same setting; the flag wins over it. */
  env?: string;
  /** Placeholder for the value in help, e.g. URL. */
  placeholder?: string;
  help: string;
}

export interface CommandSpec {
  /** The words that name it, e.g. `tokens create`. */
  name: string;
  /** Positional arguments, all required, in order, e.g. ['PROJECT']. */
  args: readonly string[];
  flags: Readonly<Record<string, FlagSpec>>;
  summary: string;
  /** Run by Slipway itself (the daemon's own processes), not by people: left out of help. */
  hidden?: boolean;
}

export interface CommandLine {
  spec: CommandSpec;
  args: string[];
  values: Map<string, string>;
  lists: Map<string, string[]>;
  switches: Set<string>;
  help: boolean;
}

export function parseCommandLine(spec: CommandSpec, argv: readonly string[], problems: string[]): CommandLine {
  const line: CommandLine = { spec, args: [], values: new Map(), lists: new Map(), switches: new Set(), help: false };
  let flagsEnded = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (flagsEnded || !arg.startsWith('-') || arg === '-') {
      line.args.push(arg);
      continue;
    }
    if (arg === '--') {
      flagsEnded = true;
      continue;
    }
    if (arg === '--help' || arg === '-h') {
      line.help = true;
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = eq >= 0 ? arg.slice(0, eq) : arg;
    const flagSpec = spec.flags[flag];
    if (flagSpec === undefined) {
      const known = Object.keys(spec.flags);
      problems.push(`unknown flag '${flag}' for slipway ${spec.name}; ${known.length > 0 ? `expected one of ${known.join(', ')}` : 'it takes none'}`);
      continue;
    }
    if (flagSpec.kind === 'switch') {
      if (eq >= 0) problems.push(`flag ${flag} takes no value; got '${arg}'`);
      else line.switches.add(flag);
      continue;
    }
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) {
      problems.push(`flag ${flag} needs a value${flagSpec.placeholder ? ` (${flagSpec.placeholder})` : ''}`);
      continue;
    }
    if (flagSpec.kind === 'list') line.lists.set(flag, [...(line.lists.get(flag) ?? []), value]);
    else line.values.set(flag, value);
  }
  if (line.help) return line;
  const usage = `slipway ${spec.name}${spec.args.map((a) => ` ${a}`).join('')}`;
  for (const missing of spec.args.slice(line.args.length)) problems.push(`${missing} is required (${usage})`);
  spec.args.forEach((name, i) => {
    if (line.args[i] === '') problems.push(`${name} is empty (${usage})`);
  });
  for (const extra of line.args.slice(spec.args.length)) problems.push(`unexpected argument '${extra}' (${usage})`);
  return line;
}

/** The setting of a value flag: the flag, else its environment variable, else undefined. */
export function settingOf(line: CommandLine, flag: string, env: Readonly<Record<string, string | undefined>>): string | undefined {
  const fromFlag = line.values.get(flag);
  if (fromFlag !== undefined) return fromFlag;
  const name = line.spec.flags[flag]?.env;
  const fromEnv = name === undefined ? undefined : env[name];
  return fromEnv === '' ? undefined : fromEnv;
}

/** Help for one command: its use, its summary and its flags with their variables. */
export function commandHelp(spec: CommandSpec): string {
  const flags = Object.entries(spec.flags).map(([flag, f]) => {
    const left = `${flag}${f.placeholder ? ` ${f.placeholder}` : ''}`;
    const env = f.env ? ` [${f.env}]` : '';
    return `  ${left.padEnd(32)} ${f.help}${f.kind === 'list' ? ' (repeatable)' : ''}${env}`;
  });
  return [`Usage: slipway ${spec.name}${spec.args.map((a) => ` ${a}`).join('')}${flags.length > 0 ? ' [flags]' : ''}`, '', spec.summary, ...(flags.length > 0 ? ['', 'Flags:', ...flags] : [])].join('\n');
}
