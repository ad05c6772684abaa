// The OIDC token of the CI job the CLI runs in, which the gateway exchanges for a short-lived
// Slipway token: no long-lived secret has to be stored in the CI system.
//
// Each CI hands its token out differently: GitHub Actions through an HTTPS endpoint the runner
// names in the environment, GitLab and CircleCI in an environment variable, Buildkite through its
// agent's command line. The token is a credential: it appears in no message and no log line.
import { execFile } from 'node:child_process';
import https from 'node:https';
import { rootCertificates } from 'node:tls';
import type { Env } from '@slipway/proto';
import { CliError } from './cliError.js';

export type CiName = 'github' | 'gitlab' | 'circleci' | 'buildkite';

export interface CiOidcToken {
  ci: CiName;
  token: string;
}

export interface CiOidcTokenOptions {
  /** The audience to ask for: the `audience` of the project's trust policy at the gateway. */
  audience: string;
  /** The environment to detect the CI from (and to run buildkite-agent with). */
  env: Env;
  /** Variable holding GitLab's id token (the name under `id_tokens:`). Default SLIPWAY_ID_TOKEN. */
  gitlabTokenVariable?: string;
  /** Limit for getting the token (GitHub's endpoint, buildkite-agent). Default 30 s. */
  timeoutMs?: number;
  /** PEM CA certificate(s) trusted in addition to the system's for GitHub's token endpoint. */
  extraCa?: string | Buffer;
}

export const DEFAULT_GITLAB_TOKEN_VARIABLE = 'SLIPWAY_ID_TOKEN';
const DEFAULT_TIMEOUT_MS = 30_000;
const MAX_RESPONSE_BYTES = 64 * 1024;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PERMISSION_HINT =
  'give the job `permissions: id-token: write` (in the workflow or the job); ' +
  'GitHub never grants it to pull requests from forks';

/** Which CI the environment belongs to, or undefined outside the supported ones. */
export function detectCi(env: Env): CiName | undefined {
  if (isSet(env['GITHUB_ACTIONS']) || isSet(env['ACTIONS_ID_TOKEN_REQUEST_URL'])) return 'github';
  if (isSet(env['GITLAB_CI'])) return 'gitlab';
  if (isSet(env['CIRCLECI'])) return 'circleci';
  if (isSet(env['BUILDKITE'])) return 'buildkite';
  return undefined;
}

/**
 * Detects the CI from `options.env` and gets its OIDC token for `options.audience`. Undefined
 * when no supported CI is detected. A CI that is detected but cannot give a token is a CliError:
 * CONFIG_INVALID when the job is not set up for it (with what to change), UNAUTHENTICATED when
 * the CI refused or failed to hand one out.
 */
export async function fetchCiOidcToken(options: CiOidcTokenOptions): Promise<CiOidcToken | undefined> {
  const { audience, env } = options;
  if (typeof audience !== 'string' || audience.trim() === '') {
    throw new CliError('CONFIG_INVALID', 'the OIDC audience is empty; it must equal the audience of the trust policy at the gateway');
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  switch (detectCi(env)) {
    case 'github':
      return { ci: 'github', token: await githubToken(env, audience, timeoutMs, options.extraCa) };
    case 'gitlab':
      return { ci: 'gitlab', token: gitlabToken(env, audience, options.gitlabTokenVariable ?? DEFAULT_GITLAB_TOKEN_VARIABLE) };
    case 'circleci':
      return { ci: 'circleci', token: circleCiToken(env) };
    case 'buildkite':
      return { ci: 'buildkite', token: await buildkiteToken(env, audience, timeoutMs) };
    case undefined:
      return undefined;
  }
}

// GitHub Actions: the runner sets ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN only for jobs with
// `id-token: write`, so their absence inside GitHub Actions says exactly what to fix.
// The request goes straight to the endpoint: GitHub-hosted runners need no proxy. HTTPS_PROXY
// support for self-hosted runners behind one can come later.
async function githubToken(env: Env, audience: string, timeoutMs: number, extraCa: string | Buffer | undefined): Promise<string> {
  const urlText = env['ACTIONS_ID_TOKEN_REQUEST_URL']?.trim() ?? '';
  const requestToken = env['ACTIONS_ID_TOKEN_REQUEST_TOKEN']?.trim() ?? '';
  if (urlText === '' || requestToken === '') {
    const missing = [urlText === '' ? 'ACTIONS_ID_TOKEN_REQUEST_URL' : '', requestToken === '' ? 'ACTIONS_ID_TOKEN_REQUEST_TOKEN' : '']
      .filter((n) => n !== '')
      .join(' and ');
    throw new CliError(
      'CONFIG_INVALID',
      `running in GitHub Actions, but the job may not request an OIDC token (${missing} not set): ${PERMISSION_HINT}`,
    );
  }
  let url: URL;
  try {
    url = new URL(urlText);
  } catch {
    throw new CliError('CONFIG_INVALID', 'ACTIONS_ID_TOKEN_REQUEST_URL is not a URL');
  }
  // The request token is a credential too: it only travels over TLS.
  if (url.protocol !== 'https:') {
    throw new CliError('CONFIG_INVALID', `ACTIONS_ID_TOKEN_REQUEST_URL is ${url.protocol.slice(0, -1)}, expected an https:// URL`);
  }
  url.searchParams.set('audience', audience);
  const where = `GitHub's OIDC token endpoint ${url.origin}${url.pathname}`;

  const { status, body } = await httpsGet(url, requestToken, timeoutMs, extraCa, where);
  if (status !== 200) {
    const hint = status === 401 || status === 403 ? `; ${PERMISSION_HINT}` : '';
    throw new CliError('UNAUTHENTICATED', `${where} answered HTTP ${status}${describeGithubError(body)}${hint}`);
  }
  let value: unknown;
  try {
    value = (JSON.parse(body) as { value?: unknown } | null)?.value;
  } catch {
    throw new CliError('UNAUTHENTICATED', `${where} answered 200 with something that is not JSON (${body.length} bytes)`);
  }
  if (typeof value !== 'string' || !JWT_SHAPE.test(value)) {
    throw new CliError('UNAUTHENTICATED', `${where} answered 200 without a token: expected JSON {"value": "<JWT>"}`);
  }
  return value;
}

// GitLab writes each `id_tokens:` entry into a variable; its audience is fixed there, in the
// job's YAML, so a wrong one is caught here where the fix can be named.
function gitlabToken(env: Env, audience: string, variable: string): string {
  if (!VARIABLE_NAME.test(variable)) {
    throw new CliError('CONFIG_INVALID', `the GitLab id token variable '${variable}' is not a valid variable name`);
  }
  const setup = `id_tokens: { ${variable}: { aud: '${audience}' } }`;
  const token = env[variable]?.trim() ?? '';
  if (token === '') {
    throw new CliError('CONFIG_INVALID', `running in GitLab CI, but $${variable} is empty or not set; give the job ${setup}`);
  }
  const payload = unverifiedPayload(token);
  if (payload === undefined) throw new CliError('CONFIG_INVALID', `$${variable} does not hold a JWT; give the job ${setup}`);
  const aud = payload['aud'];
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
  if (!audiences.includes(audience)) {
    throw new CliError('CONFIG_INVALID', `the id token in $${variable} is for audience ${describeAudience(aud)}, not '${audience}'; give the job ${setup}`);
  }
  return token;
}

// CircleCI sets CIRCLE_OIDC_TOKEN_V2 for jobs that use a context. Its audience is the
// organization id and cannot be chosen through the variable, so it is not checked here: the
// trust policy's audience has to be that id.
function circleCiToken(env: Env): string {
  const token = env['CIRCLE_OIDC_TOKEN_V2']?.trim() ?? '';
  if (token === '') {
    throw new CliError(
      'CONFIG_INVALID',
      'running on CircleCI, but CIRCLE_OIDC_TOKEN_V2 is not set; CircleCI only gives OIDC tokens to jobs that use a context',
    );
  }
  if (!JWT_SHAPE.test(token)) throw new CliError('CONFIG_INVALID', 'CIRCLE_OIDC_TOKEN_V2 does not hold a JWT');
  return token;
}

function buildkiteToken(env: Env, audience: string, timeoutMs: number): Promise<string> {
  const args = ['oidc', 'request-token', '--audience', audience];
  const command = `buildkite-agent ${args.slice(0, 2).join(' ')}`;
  const childEnv = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
  return new Promise((resolve, reject) => {
    // With an env given, execFile looks the program up on that env's PATH.
    execFile(
      'buildkite-agent',
      args,
      { env: childEnv, timeout: timeoutMs, maxBuffer: MAX_RESPONSE_BYTES, windowsHide: true, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err !== null) {
          const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: NodeJS.Signals | null; code?: string | number | null };
          if (e.code === 'ENOENT') {
            reject(new CliError('CONFIG_INVALID', 'running on Buildkite (BUILDKITE is set), but buildkite-agent is not on PATH', { cause: err }));
          } else if (e.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') {
            reject(new CliError('UNAUTHENTICATED', `${command} printed more than ${MAX_RESPONSE_BYTES} bytes; expected one token`));
          } else if (e.killed === true) {
            reject(new CliError('UNAUTHENTICATED', `${command} did not finish within ${timeoutMs} ms`));
          } else {
            const how = typeof e.code === 'number' ? `exited with code ${e.code}` : `ended by ${e.signal ?? e.code ?? 'an error'}`;
            reject(new CliError('UNAUTHENTICATED', `${command} ${how}${describeStderr(stderr)}`));
          }
          return;
        }
        const token = stdout.trim();
        if (!JWT_SHAPE.test(token)) {
          reject(new CliError('UNAUTHENTICATED', `${command} printed no token: expected one JWT on stdout, got ${stdout.length} bytes`));
          return;
        }
        resolve(token);
      },
    );
  });
}

function httpsGet(
  url: URL,
  bearer: string,
  timeoutMs: number,
  extraCa: string | Buffer | undefined,
  where: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (message: string, cause?: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.destroy();
      reject(new CliError('UNAUTHENTICATED', `${where}: ${message}`, cause === undefined ? undefined : { cause }));
    };
    const request = https.get(
      url,
      {
        agent: false,
        // Node's `ca` replaces the system store rather than adding to it, so the system roots go in too.
        ...(extraCa === undefined ? {} : { ca: [...rootCertificates, extraCa] }),
        headers: { authorization: `Bearer ${bearer}`, accept: 'application/json', 'user-agent': 'slipway-cli' },
      },
      (response) => {
        response.on('error', (err) => fail(`the answer broke off: ${err.message}`, err));
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) fail(`answer is more than ${MAX_RESPONSE_BYTES} bytes`);
          else chunks.push(chunk);
        });
        response.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
        });
      },
    );
    request.on('error', (err) => fail(`request failed: ${err.message}`, err));
    const timer = setTimeout(() => fail(`no complete answer within ${timeoutMs} ms`), timeoutMs);
  });
}

/** GitHub's error bodies are JSON with a `message`; anything else is described, not repeated. */
function describeGithubError(body: string): string {
  try {
    const message = (JSON.parse(body) as { message?: unknown } | null)?.message;
    if (typeof message === 'string' && message !== '') return `: ${clean(message)}`;
  } catch {
    // Not JSON: fall through.
  }
  return body === '' ? '' : ` (${body.length} bytes)`;
}

function describeStderr(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines.length === 0 ? '' : `: ${clean(lines[lines.length - 1]!)}`;
}

function describeAudience(aud: unknown): string {
  if (aud === undefined) return 'none';
  return clean(typeof aud === 'string' ? `'${aud}'` : JSON.stringify(aud));
}

function unverifiedPayload(token: string): Record<string, unknown> | undefined {
  if (!JWT_SHAPE.test(token)) return undefined;
  try {
    const payload: unknown = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8'));
    return typeof payload === 'object' && payload !== null && !Array.isArray(payload) ? (payload as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Bounded and without control characters: text from elsewhere must not flood or forge log lines. */
function clean(text: string): string {
  const plain = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, '?');
  return plain.length > 200 ? `${plain.slice(0, 197)}...` : plain;
}

function isSet(value: string | undefined): boolean {
  return value !== undefined && value.trim() !== '' && value.trim().toLowerCase() !== 'false';
}
