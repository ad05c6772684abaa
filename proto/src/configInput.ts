// Shared by every program's loadConfig(): flags and environment merge into one map keyed by the
// environment variable name, and every problem is collected rather than thrown, so a user sees
// all of them at once.

export type Env = Record<string, string | undefined>;

export interface FlagKinds {
  // Flags that take no value.
  boolean?: ReadonlySet<string>;
  // Flags that may be given more than once; their values join with commas.
  repeatable?: ReadonlySet<string>;
}

export function mergeFlags(env: Env, argv: readonly string[], flags: Record<string, string>, problems: string[], kinds: FlagKinds = {}): Env {
  const merged: Env = { ...env };
  const fromFlags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const flag = eq >= 0 ? arg.slice(0, eq) : arg;
    const name = flags[flag];
    if (name === undefined) {
      problems.push(`unknown flag '${flag}'; expected one of ${Object.keys(flags).join(', ')}`);
      continue;
    }
    if (kinds.boolean?.has(flag) && eq < 0) {
      merged[name] = 'true';
      continue;
    }
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) {
      problems.push(`flag ${flag} needs a value`);
      continue;
    }
    // A flag replaces what the environment said; a repeated flag adds to what flags said.
    merged[name] = kinds.repeatable?.has(flag) && fromFlags.has(name) ? `${merged[name]},${value}` : value;
    fromFlags.add(name);
  }
  return merged;
}

export function readInt(env: Env, name: string, fallback: number, min: number, max: number, problems: string[]): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    problems.push(`${name} must be an integer from ${min} to ${max}; got '${raw}'`);
    return fallback;
  }
  return value;
}

export function readBool(env: Env, name: string, fallback: boolean, problems: string[]): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (['1', 'true', 'yes', 'on'].includes(raw.toLowerCase())) return true;
  if (['0', 'false', 'no', 'off'].includes(raw.toLowerCase())) return false;
  problems.push(`${name} must be true or false; got '${raw}'`);
  return fallback;
}

export function readEnum<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T, problems: string[]): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if ((allowed as readonly string[]).includes(raw)) return raw as T;
  problems.push(`${name} must be one of ${allowed.join(', ')}; got '${raw}'`);
  return fallback;
}

export function parseHostPort(raw: string, name: string, defaultHost: string, problems: string[]): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d+)$/.exec(raw) ?? /^()()(\d+)$/.exec(raw);
  const port = match ? Number(match[3]) : NaN;
  if (!match || !Number.isInteger(port) || port < 0 || port > 65535) {
    problems.push(`${name} must be HOST:PORT or PORT (port 0-65535); got '${raw}'`);
    return { host: defaultHost, port: 0 };
  }
  return { host: match[1] ?? (match[2] || defaultHost), port };
}

// An https:// URL (the gateway's address), required.
export function readHttpsUrl(env: Env, name: string, flag: string, problems: string[]): URL {
  const raw = env[name];
  if (!raw) {
    problems.push(`${name} (or ${flag}) is required, e.g. https://slipway.example.com`);
    return new URL('https://invalid.invalid');
  }
  try {
    const url = new URL(raw);
    if (url.protocol !== 'https:') problems.push(`${name} must be an https:// URL; got '${raw}'`);
    return url;
  } catch {
    problems.push(`${name} must be a URL like https://slipway.example.com; got '${raw}'`);
    return new URL('https://invalid.invalid');
  }
}
