import type { GatewayErrorCode } from './gatewayError.js';

export const AuditPaths = ['tunnel', 'builds', 'agent', 'oidc', 'admin', 'forward'] as const;
export type AuditPath = (typeof AuditPaths)[number];

interface AuthDecisionFields {
  path: AuditPath;
  /** The error message or other explanation. May hold anything: secrets are removed before writing. */
  reason?: string;
  subject?: string;
  project?: string;
  tokenId?: string;
  agentId?: string;
  /** The peer's address as the socket reports it; undefined once the socket has gone. */
  source: string | undefined;
  /** How the request arrived, in the words the metrics use: 'h2', 'websocket', 'https', 'forward'. */
  transport: string;
}

/** One authentication decision. A denial always says which code the caller was answered with. */
export type AuthDecision = AuthDecisionFields &
  ({ decision: 'allow'; code?: undefined } | { decision: 'deny'; code: GatewayErrorCode });

/** What one audit line holds (fields left out when unknown). */
export interface AuthAuditRecord {
  time: string;
  event: 'auth';
  path: string;
  decision: 'allow' | 'deny';
  code?: string;
  reason?: string;
  subject?: string;
  project?: string;
  tokenId?: string;
  agentId?: string;
  source: string;
  transport: string;
}

export interface AuditLogOptions {
  /** Receives one JSON line (ending in a newline) per decision, whatever the log level. */
  write: (line: string) => void;
  /** Milliseconds since the epoch. Default Date.now. */
  now?: () => number;
}

const MAX_FIELD_CHARS = 256;
const MAX_REASON_CHARS = 1024;
// Redaction runs before the cap, so that a credential cut in half cannot slip past the patterns;
// this bound only keeps the patterns' work proportional to something sane.
const MAX_SCAN_CHARS = 64 * 1024;
const REDACTED = '[redacted]';
const TRUNCATED = '…';

// Who was let in or turned away, by which path, from where. Operators keep this longer and share
// it wider than ordinary logs, so it goes to its own sink (never silenced by --log-level), and no
// field can carry a credential: every string is redacted and capped on the way out, whatever the
// caller put in it.
export class AuditLog {
  readonly #write: (line: string) => void;
  readonly #now: () => number;

  constructor(options: AuditLogOptions) {
    this.#write = options.write;
    this.#now = options.now ?? Date.now;
  }

  /** Writes one decision and returns the record as written. */
  auth(decision: AuthDecision): AuthAuditRecord {
    const record: AuthAuditRecord = {
      time: new Date(this.#now()).toISOString(),
      event: 'auth',
      path: clean(decision.path, MAX_FIELD_CHARS),
      decision: decision.decision === 'allow' ? 'allow' : 'deny',
      code: optional(decision.code, MAX_FIELD_CHARS),
      reason: optional(decision.reason, MAX_REASON_CHARS),
      subject: optional(decision.subject, MAX_FIELD_CHARS),
      project: optional(decision.project, MAX_FIELD_CHARS),
      tokenId: optional(decision.tokenId, MAX_FIELD_CHARS),
      agentId: optional(decision.agentId, MAX_FIELD_CHARS),
      source: optional(decision.source, MAX_FIELD_CHARS) ?? 'unknown',
      transport: clean(decision.transport, MAX_FIELD_CHARS),
    };
    for (const k of Object.keys(record) as Array<keyof AuthAuditRecord>) if (record[k] === undefined) delete record[k];
    this.#write(`${JSON.stringify(record)}\n`);
    return record;
  }
}

function optional(value: unknown, max: number): string | undefined {
  return value === undefined || value === null ? undefined : clean(value, max);
}

// Runtime values can be other than their types say (a caller passing a claim straight through),
// so everything is made a string before it is inspected.
function clean(value: unknown, max: number): string {
  // Controls become spaces first, so that a credential set off from its scheme by, say, a NUL is
  // still seen as one.
  const text = redactSecrets(String(value).slice(0, MAX_SCAN_CHARS).replace(CONTROL, ' '));
  return text.length <= max ? text : text.slice(0, max - TRUNCATED.length) + TRUNCATED;
}

// JSON.stringify escapes C0 controls but not C1 (some terminals act on them) nor the Unicode line
// separators (some line readers split on them): audit lines are read in terminals and split on lines.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

// An HTTP credential after its scheme: `Bearer x`, `Basic x`, also URL-encoded (`Bearer%20x`) and
// quoted. A scheme followed by something that cannot be a credential ("'Bearer <token>'") is kept,
// so that our own messages about the header stay readable.
const SCHEME_CREDENTIAL = /\b(Bearer|Basic)(?:\s|%20|\+)+["']?[^\s"'<>,;]+/gi;

// Runs of dot-separated base64url segments (a JWS has three, a JWE five; padding tolerated).
const DOTTED_RUN = /(?<![A-Za-z0-9_=.-])[A-Za-z0-9_=-]+(?:\.[A-Za-z0-9_=-]*){2,}/g;
// A JWT's header and payload are JSON objects, whose base64url starts with "ey" ('{"' or '{ ') or
// "ew" ('{' and a newline or tab); a signature is at least 43 characters (HS256), 86 for ES256.
const JSON_SEGMENT = /^e[wy][A-Za-z0-9_=-]{10,}$/;
const SIGNATURE_CHARS = 40;

/**
 * Removes anything that could be a credential: JWTs, and what follows a Bearer or Basic scheme.
 * Host names, addresses and agent ids are dot-separated words too, but none has a segment that
 * is base64url JSON or signature-long, so they survive and the audit record stays useful.
 */
export function redactSecrets(text: string): string {
  return text
    .replace(SCHEME_CREDENTIAL, (_m, scheme: string) => `${scheme} ${REDACTED}`)
    .replace(DOTTED_RUN, (run) => (run.split('.').some((s) => JSON_SEGMENT.test(s) || s.length >= SIGNATURE_CHARS) ? REDACTED : run));
}
