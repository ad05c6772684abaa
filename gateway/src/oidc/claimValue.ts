// Reading one claim of a CI OIDC token by name, and rendering a claim for messages and audit.
// Trust policies name claims as dot paths (`a.b`), but some CI providers use dots inside flat
// claim names (CircleCI's `oidc.circleci.com/project-id`), so a path is resolved against the
// keys that are actually there rather than split blindly.

/** Longest a rendered value gets in an error message. */
const MESSAGE_VALUE_CHARS = 80;
/** Longest a string claim gets in an audit record. */
const AUDIT_VALUE_CHARS = 256;
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

export type AuditValue = string | number | boolean;

/**
 * The value at `path` in `claims`: the whole path as one key if present, else the longest dotted
 * prefix that is a key, descending into objects. Only own properties count, so a path such as
 * `constructor` or `__proto__.x` never reaches Object.prototype.
 */
export function claimValue(claims: Record<string, unknown>, path: string): unknown {
  let current: unknown = claims;
  let rest = path.split('.');
  while (rest.length > 0) {
    if (!isRecord(current)) return undefined;
    const here: Record<string, unknown> = current;
    let taken = 0;
    for (let n = rest.length; n > 0; n--) {
      if (Object.hasOwn(here, rest.slice(0, n).join('.'))) {
        taken = n;
        break;
      }
    }
    if (taken === 0) return undefined;
    current = here[rest.slice(0, taken).join('.')];
    rest = rest.slice(taken);
  }
  return current;
}

/**
 * A claim as text for pattern matching: strings as they are, numbers and booleans written out
 * (some providers send ids as numbers), anything else (objects, arrays, null) is not text.
 */
export function claimText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if ((typeof value === 'number' && Number.isFinite(value)) || typeof value === 'boolean') return String(value);
  return undefined;
}

/**
 * Renders a value taken from a token for an error message. Tokens are attacker-controlled, so
 * the text is bounded and stripped of control characters: it can neither flood nor forge a log line.
 */
export function showClaim(value: unknown): string {
  if (value === undefined) return 'missing';
  let text: string;
  if (typeof value === 'string') text = `'${value}'`;
  else if (Array.isArray(value) && value.every((v) => typeof v === 'string')) text = `[${value.map((v) => `'${v}'`).join(', ')}]`;
  else text = JSON.stringify(value) ?? String(value);
  text = text.replace(CONTROL_CHARACTERS, '?');
  return text.length > MESSAGE_VALUE_CHARS ? `${text.slice(0, MESSAGE_VALUE_CHARS - 3)}...` : text;
}

/** A claim fit for an audit record: primitives only, strings bounded and without control characters. */
export function auditValue(value: unknown): AuditValue | undefined {
  if (typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))) return value;
  if (typeof value !== 'string') return undefined;
  const clean = value.replace(CONTROL_CHARACTERS, '?');
  return clean.length > AUDIT_VALUE_CHARS ? `${clean.slice(0, AUDIT_VALUE_CHARS - 3)}...` : clean;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
