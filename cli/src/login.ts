import type { Readable } from 'node:stream';
import type { ReadStream } from 'node:tty';
import { CliError } from './cliError.js';
import type { LoginConfig } from './config.js';
import { readCredentials, removeCredentials, writeCredentials, type StoredCredentials } from './credentials.js';
import { callGatewayApi, gatewayAnswerOf, type ApiCarrier } from './gatewayApi.js';
import type { CommandOutput } from './adminCommand.js';
import { unverifiedClaims } from './tokenClaims.js';

const MAX_TOKEN_BYTES = 16 * 1024;

// A build id no build has: asking for it costs the gateway one signature check and no lookup.
const NO_SUCH_BUILD = '00000000-0000-4000-8000-000000000000';

/** `slipway login`: checks the token with the gateway, then stores it. The token is never printed. */
export async function runLogin(config: LoginConfig, api: ApiCarrier, stdin: Readable, out: CommandOutput): Promise<void> {
  const token = config.token.from === 'flag' ? config.token.token : config.token.from === 'stdin' ? await readToken(stdin) : await promptToken(stdin, out);
  const claims = unverifiedClaims(token);
  await verify(config, api, token, claims);

  const gateway = config.gatewayUrl.origin;
  const previous = config.stored;
  // Tokens for another gateway are dropped rather than kept beside this one: every stored token
  // is sent to the stored gateway, and only there.
  const keep = previous !== undefined && originOf(previous.gateway) === gateway ? previous : undefined;
  const next: StoredCredentials = { ...keep, gateway };
  if (config.caCertPath !== undefined) next.caCert = config.caCertPath;
  else delete next.caCert;
  if (config.admin) next.adminToken = token;
  else next.token = token;
  writeCredentials(config.credentialsFile, next);

  if (previous !== undefined && keep === undefined) out.stderr(`Replaced the stored credentials for ${previous.gateway}.\n`);
  const expires = typeof claims['exp'] === 'number' ? `; it expires ${new Date(claims['exp'] * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z')}` : '';
  const who = config.admin
    ? `as administrator${typeof claims['sub'] === 'string' ? ` ${claims['sub']}` : ''}`
    : `for project ${typeof claims['project'] === 'string' ? claims['project'] : '(unnamed)'}`;
  out.stderr(`Logged in to ${gateway} ${who}${expires}.\nCredentials stored in ${config.credentialsFile}\n`);
  if (!config.admin && typeof claims['scope'] === 'string' && !claims['scope'].split(' ').includes('build')) {
    out.stderr(`Note: this token's scopes are '${claims['scope']}'; creating builds needs 'build'.\n`);
  }
}

/** `slipway logout`: forgets the stored credentials (or only the admin token). */
export function runLogout(admin: boolean, file: string, out: CommandOutput): void {
  if (!admin) {
    out.stderr(removeCredentials(file) ? `Logged out: removed ${file}\n` : `Not logged in (no ${file}).\n`);
    return;
  }
  const stored = readCredentials(file);
  if (stored?.adminToken === undefined) {
    out.stderr('No admin token is stored.\n');
    return;
  }
  const { adminToken: _forgotten, ...rest } = stored;
  if (rest.token === undefined) removeCredentials(file);
  else writeCredentials(file, rest);
  out.stderr(`Forgot the admin token for ${stored.gateway}.\n`);
}

// Proves the gateway accepts the token with the cheapest call its kind of token may make.
// Admin: listing projects. Project: the build API has no call a project token may make without
// creating a build, so it asks for a build that does not exist. Authentication comes first on
// every build route, so 401 means the token was refused (bad signature, expired, revoked, another
// gateway's), while 403 (a project token may not read builds) or 404 means it was accepted.
// A token without the build scope is also answered 403, before its revocation is checked; the
// scope note after login covers that case.
async function verify(config: LoginConfig, api: ApiCarrier, token: string, claims: Record<string, unknown>): Promise<void> {
  const timeoutMs = Math.max(config.connectTimeoutMs, 10_000);
  const kind = config.admin ? 'admin token' : 'project token';
  try {
    if (config.admin) {
      await callGatewayApi(api, { method: 'GET', path: '/v1/admin/projects', token, timeoutMs });
    } else {
      await callGatewayApi(api, { method: 'GET', path: `/v1/builds/${NO_SUCH_BUILD}`, token, timeoutMs });
    }
  } catch (err) {
    const answer = gatewayAnswerOf(err);
    if (answer === undefined) throw err;
    if (!config.admin && (answer.status === 403 || answer.status === 404) && answer.wireCode !== undefined) return;
    if (config.admin && answer.status === 404 && /^no route/.test(answer.message)) {
      throw new CliError('NOT_FOUND', `${config.gatewayUrl.origin} does not serve the admin API (${answer.message}); nothing was stored`);
    }
    if (answer.status === 401) {
      throw new CliError('UNAUTHENTICATED', `${config.gatewayUrl.origin} did not accept the ${kind}: ${answer.message}${kindHint(config.admin, claims)}; nothing was stored`);
    }
    throw new CliError((err as CliError).code, `cannot check the ${kind} with ${config.gatewayUrl.origin}: ${(err as Error).message}; nothing was stored`);
  }
}

function originOf(url: string): string | undefined {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
}

function kindHint(admin: boolean, claims: Record<string, unknown>): string {
  const aud = claims['aud'];
  if (!admin && aud === 'slipway-admin') return ' (this is an admin token: use slipway login --admin)';
  if (admin && aud === 'slipway') return ' (this is a project token: use slipway login without --admin)';
  return '';
}

// Asked on the terminal with echo off: a pasted token must not stay in the scrollback. Without a
// terminal there is nobody to ask, and silently waiting on a pipe would look like a hang.
async function promptToken(stdin: Readable, out: CommandOutput): Promise<string> {
  const tty = stdin as Partial<ReadStream>;
  if (tty.isTTY !== true || typeof tty.setRawMode !== 'function') {
    throw new CliError('CONFIG_INVALID', 'no token given: pipe it in with --token-stdin (e.g. slipway login --token-stdin < token.txt), or pass --token');
  }
  out.stderr('Token (input hidden): ');
  tty.setRawMode(true);
  try {
    let typed = '';
    for await (const chunk of stdin) {
      for (const ch of Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk)) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return finish(typed);
        if (ch === '\u0003') throw new CliError('CONFIG_INVALID', 'login cancelled; nothing was stored');
        if (ch === '\u007f' || ch === '\b') typed = typed.slice(0, -1);
        else if (typed.length >= MAX_TOKEN_BYTES) throw new CliError('CONFIG_INVALID', `more than ${MAX_TOKEN_BYTES} characters typed; expected one token`);
        else typed += ch;
      }
    }
    return finish(typed);
  } finally {
    tty.setRawMode(false);
    stdin.pause();
    out.stderr('\n');
  }

  function finish(typed: string): string {
    const token = typed.trim();
    if (token === '') throw new CliError('CONFIG_INVALID', 'no token entered; nothing was stored');
    return token;
  }
}

async function readToken(stdin: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stdin) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += buffer.length;
    if (size > MAX_TOKEN_BYTES) throw new CliError('CONFIG_INVALID', `stdin holds more than ${MAX_TOKEN_BYTES} bytes; expected one token`);
    chunks.push(buffer);
    // A person pasting ends with Enter; there is no need to wait for Ctrl-D.
    if (buffer.includes(0x0a) && Buffer.concat(chunks).toString('utf8').trim() !== '') break;
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') throw new CliError('CONFIG_INVALID', 'no token on stdin (--token-stdin reads one line)');
  if (/\s/.test(text)) throw new CliError('CONFIG_INVALID', 'stdin holds more than one word; expected one token on one line');
  return text;
}

