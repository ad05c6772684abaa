import path from 'node:path';

// .dockerignore-style patterns, as BuildKit sends them in include-patterns / exclude-patterns:
// Go filepath.Match syntax (`*`, `?`, `[...]`, `\` escapes) plus `**` for any number of folders;
// a pattern matches a path or any folder above it; `!` re-includes; the last match wins.

interface Pattern {
  regex: RegExp;
  exclusion: boolean;
  /** The literal folder part before the first wildcard, to know which folders can hold matches. */
  prefix: string;
  /** The whole pattern when it has no wildcard. */
  literal: string | undefined;
}

function toRegex(pattern: string): RegExp {
  let out = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        if (pattern[i + 1] === '/') {
          i++;
          out += '(?:.*/)?';
        } else out += '.*';
      } else out += '[^/]*';
    } else if (c === '?') out += '[^/]';
    else if (c === '[') {
      const close = pattern.indexOf(']', i + 1);
      if (close < 0) out += '\\[';
      else {
        let body = pattern.slice(i + 1, close);
        if (body.startsWith('^') || body.startsWith('!')) body = `^${body.slice(1)}`;
        out += `[${body.replaceAll('\\', '\\\\')}]`;
        i = close;
      }
    } else if (c === '\\' && i + 1 < pattern.length) {
      out += pattern[++i]!.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    } else out += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(`${out}$`, 's');
}

function clean(raw: string): string {
  const cleaned = path.posix.normalize(raw.trim());
  return cleaned.replace(/^\/+/, '').replace(/\/+$/, '') || '.';
}

export class PathPatterns {
  private readonly patterns: Pattern[];

  constructor(raw: readonly string[]) {
    this.patterns = raw
      .map((p) => p.trim())
      .filter((p) => p !== '' && !p.startsWith('#'))
      .map((p) => {
        const exclusion = p.startsWith('!');
        const body = clean(exclusion ? p.slice(1) : p);
        const wild = body.search(/[*?[\\]/);
        const literal = wild < 0 ? body : body.slice(0, wild);
        return { regex: toRegex(body), exclusion, prefix: literal.includes('/') ? literal.slice(0, literal.lastIndexOf('/')) : '', literal: wild < 0 ? body : undefined };
      });
  }

  get empty(): boolean {
    return this.patterns.length === 0;
  }

  get hasExclusions(): boolean {
    return this.patterns.some((p) => p.exclusion);
  }

  /** Whether `relPath` (slash-separated, relative) is matched: by the last pattern matching it or a folder above it. */
  matches(relPath: string): boolean {
    const parents: string[] = [];
    for (let p = path.posix.dirname(relPath); p !== '.' && p !== ''; p = path.posix.dirname(p)) parents.push(p);
    let matched = false;
    for (const pattern of this.patterns) {
      if (matched === !pattern.exclusion) continue;
      if (pattern.regex.test(relPath) || parents.some((parent) => pattern.regex.test(parent))) matched = !pattern.exclusion;
    }
    return matched;
  }

  /** Whether a folder may hold paths some pattern matches (so it must be walked although not itself matched). */
  mayHoldMatches(dir: string, exclusionsOnly: boolean): boolean {
    return this.patterns.some((p) => {
      if (exclusionsOnly !== p.exclusion) return false;
      if (p.literal !== undefined) return p.literal.startsWith(`${dir}/`);
      return p.prefix === '' || p.prefix === dir || p.prefix.startsWith(`${dir}/`) || dir.startsWith(`${p.prefix}/`);
    });
  }
}
