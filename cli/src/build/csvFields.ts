// buildx's comma-separated KEY=VALUE flag values (--output, --secret, --cache-to, ...).

/** `k=v,k2=v2` (buildx's CSV form, without quoting) into its fields. */
export function fields(raw: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of raw.split(',')) {
    const eq = part.indexOf('=');
    out.set(eq < 0 ? part.trim() : part.slice(0, eq).trim(), eq < 0 ? '' : part.slice(eq + 1));
  }
  return out;
}
