// `slipway doctor`: every step between this machine and a builder, checked in the order a
// connection takes them, each failure explained with what to do about it. A step that depends
// on one that failed is skipped (and says so) rather than failing again for the same reason.
import dns from 'node:dns/promises';
import http2 from 'node:http2';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { Duplex } from 'node:stream';
import type tls from 'node:tls';
import { readHttpResponseHead, type Logger, type Platform } from '@slipway/proto';
import { CliError, exitCodeOf, toCliError, type CliErrorCode } from './cliError.js';
import type { DoctorConfig } from './config.js';
import { proxyChoice, proxyLabel, type ProxyChoice } from './proxySettings.js';
import { dialGateway } from './connectTunnel.js';
import { connectGatewayTls } from './gatewayTls.js';
import { GatewayConnection } from './gatewayConnection.js';
import { callGatewayApi, gatewayAnswerOf } from './gatewayApi.js';
import { TunnelClient } from './tunnelClient.js';
import { OidcTokenExchange, CI_NAMES } from './oidcTokenExchange.js';
import { unverifiedClaims } from './tokenClaims.js';
import { listWorkersOver, type BuildkitWorker } from './buildkitProbe.js';
import { countCertificates } from './caBundle.js';
import type { TransportMemory } from './transportMemory.js';
import type { TunnelStream } from './tunnelStream.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface DoctorCheck {
  /** Stable identifier for machines: config, dns, proxy, tcp, tls, http2, websocket, auth, builder:<platform>, docker. */
  id: string;
  title: string;
  status: CheckStatus;
  /** One line: what was found. */
  summary: string;
  /** More lines worth reading (which CA files, which workers, ...). */
  details: string[];
  /** What to do about a failure or warning. */
  fix?: string;
  /** The error code of a failure (its exit code is the doctor's when it is the first). */
  code?: CliErrorCode;
  /** Facts for machines (--json): the certificate's issuer, the negotiated protocol, ... */
  data?: Record<string, unknown>;
}

export interface DoctorReport {
  gateway: string | undefined;
  ok: boolean;
  checks: DoctorCheck[];
}

/** Checks run after the network ones (configure-docker's setup), given those. */
export type ExtraChecks = (earlier: readonly DoctorCheck[]) => Promise<DoctorCheck[]>;

export interface DoctorOptions {
  log: Logger;
  transportMemory?: TransportMemory;
  extraChecks?: ExtraChecks;
  now?: () => number;
}

/** The doctor's exit code: that of the first failing check, 0 when none failed. */
export function doctorExitCode(report: DoctorReport): number {
  const failed = report.checks.find((c) => c.status === 'fail');
  return failed === undefined ? 0 : exitCodeOf(failed.code ?? 'INTERNAL');
}

export async function runDoctor(config: DoctorConfig, options: DoctorOptions): Promise<DoctorReport> {
  const now = options.now ?? Date.now;
  const checks: DoctorCheck[] = [];
  const add = (check: Omit<DoctorCheck, 'details'> & { details?: string[] }): DoctorCheck => {
    const full: DoctorCheck = { details: [], ...check };
    checks.push(full);
    return full;
  };
  const skip = (id: string, title: string, because: string): void => void add({ id, title, status: 'skip', summary: `skipped: ${because}` });
  const host = config.gatewayUrl.hostname.replace(/^\[|\]$/g, '');
  const port = Number(config.gatewayUrl.port || 443);
  const authority = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;

  // 1. Configuration and token.
  const configCheck = add(configurationCheck(config, now()));
  const builderTitles = config.platforms.map((p) => [`builder:${p}`, `Builder ${p}`] as const);
  if (!config.gatewayKnown) {
    for (const [id, title] of [['dns', 'DNS'], ['proxy', 'Proxy'], ['tcp', 'TCP'], ['tls', 'TLS'], ['http2', 'HTTP/2'], ['websocket', 'WebSocket'], ['auth', 'Authentication'], ...builderTitles] as const) {
      skip(id, title, 'no gateway to check');
    }
    return finish();
  }

  // 2-3. DNS, then which way out. The choice is made first: behind a proxy, the gateway's name is
  // the proxy's to resolve.
  let choice: ProxyChoice | undefined;
  let choiceError: CliError | undefined;
  try {
    choice = proxyChoice(config.env, config.gatewayUrl);
  } catch (err) {
    choiceError = toCliError(err);
  }
  add(await dnsCheck(host, choice, config.connectTimeoutMs));
  const proxyCheck = add(proxySelectionCheck(config, choice, choiceError, authority));
  if (proxyCheck.status === 'fail') {
    for (const [id, title] of [['tcp', 'TCP'], ['tls', 'TLS'], ['http2', 'HTTP/2'], ['websocket', 'WebSocket'], ['auth', 'Authentication'], ...builderTitles] as const) skip(id, title, 'the proxy settings are unusable');
    return finish();
  }
  const proxy = choice?.proxy;

  // 4. TCP (through the proxy's CONNECT when there is one).
  const tcp = add(await tcpCheck(config, host, port, authority, proxy === undefined ? undefined : proxyLabel(proxy)));
  if (tcp.status === 'fail') {
    for (const [id, title] of [['tls', 'TLS'], ['http2', 'HTTP/2'], ['websocket', 'WebSocket'], ['auth', 'Authentication'], ...builderTitles] as const) skip(id, title, 'no TCP connection to the gateway');
    return finish();
  }

  // 5. TLS, offering h2 and http/1.1 as the tunnel client does.
  const tlsResult = await tlsCheck(config, authority, now());
  add(tlsResult.check);
  if (tlsResult.socket === undefined) {
    for (const [id, title] of [['http2', 'HTTP/2'], ['websocket', 'WebSocket'], ['auth', 'Authentication'], ...builderTitles] as const) skip(id, title, 'TLS with the gateway failed');
    return finish();
  }

  // 6-7. HTTP/2 on that connection; WebSocket on one of its own.
  const h2 = add(await http2Check(config, tlsResult.socket, tlsResult.issuer));
  add(await webSocketCheck(config, h2.status === 'ok'));
  const usable = checks.some((c) => (c.id === 'http2' || c.id === 'websocket') && c.status !== 'fail');
  if (!usable) {
    for (const [id, title] of [['auth', 'Authentication'], ...builderTitles] as const) skip(id, title, 'neither HTTP/2 nor WebSocket reaches the gateway');
    return finish();
  }

  // 8. Authentication: the token creates a build (finished at once).
  if (config.credential === undefined || configCheck.status === 'fail') {
    for (const [id, title] of [['auth', 'Authentication'], ...builderTitles] as const) skip(id, title, 'no usable project token');
    return finish();
  }
  const auth = await authenticationCheck(config, options);
  add(auth.check);
  if (auth.token === undefined) {
    for (const [id, title] of builderTitles) skip(id, title, 'the token was not accepted');
    return finish();
  }

  // 9. A builder per platform, asked BuildKit's ListWorkers through a tunnel.
  const client = new TunnelClient({
    gatewayUrl: config.gatewayUrl,
    token: auth.token,
    project: config.project,
    ca: config.ca,
    transport: config.transport,
    env: config.env,
    connectTimeoutMs: config.connectTimeoutMs,
    log: options.log,
    acquireTimeoutMs: config.acquireTimeoutMs,
    buildIdleMs: 0,
    keepaliveMs: config.keepaliveMs,
    ...(options.transportMemory ? { transportMemory: options.transportMemory } : {}),
  });
  try {
    for (const platform of config.platforms) add(await builderCheck(client, platform, config));
  } finally {
    await client.close();
  }
  return finish();

  async function finish(): Promise<DoctorReport> {
    if (options.extraChecks) {
      try {
        checks.push(...(await options.extraChecks(checks)));
      } catch (err) {
        add({ id: 'docker', title: 'Docker', status: 'fail', summary: `could not be checked: ${toCliError(err).message}`, code: 'INTERNAL' });
      }
    }
    return { gateway: config.gatewayKnown ? config.gatewayUrl.origin : undefined, ok: !checks.some((c) => c.status === 'fail'), checks };
  }
}

function configurationCheck(config: DoctorConfig, nowMs: number): Omit<DoctorCheck, 'details'> & { details: string[] } {
  const details: string[] = [];
  if (config.gatewayKnown) details.push(`gateway ${config.gatewayUrl.origin}`);
  for (const source of config.caSources ?? []) details.push(`trusting ${source.origin} ${source.path} (${countCertificates(source.pem)} certificate(s)) besides Node's bundled roots`);
  if (config.transport !== 'auto') details.push(`transport forced to ${config.transport} (SLIPWAY_TRANSPORT)`);
  if (config.problems.length > 0) {
    const noToken = config.problems.some((p) => p.startsWith('no project token'));
    const noGateway = config.problems.some((p) => p.startsWith('SLIPWAY_GATEWAY (or --gateway) is required'));
    return {
      id: 'config',
      title: 'Configuration',
      status: 'fail',
      summary: config.problems[0]!,
      details: [...config.problems.slice(1), ...details],
      fix: noGateway
        ? 'run slipway login --gateway https://YOUR-GATEWAY (it stores the gateway, CA and token), or set SLIPWAY_GATEWAY'
        : noToken
          ? `run slipway login${config.gatewayKnown ? ` --gateway ${config.gatewayUrl.origin}` : ''} with a project token (an administrator makes one with slipway tokens create PROJECT), or set SLIPWAY_TOKEN`
          : 'correct the settings named above (slipway doctor --help lists each flag and its variable)',
      code: 'CONFIG_INVALID',
    };
  }
  const credential = config.credential!;
  if (credential.kind === 'oidc') {
    return { id: 'config', title: 'Configuration', status: 'ok', summary: `no token set or stored: this ${CI_NAMES[credential.ci]} job's OIDC identity will be exchanged for project ${credential.project}`, details };
  }
  const claims = unverifiedClaims(credential.token);
  const from = credential.source === 'stored credentials' ? 'stored by slipway login' : 'from SLIPWAY_TOKEN (or --token)';
  const project = typeof claims['project'] === 'string' ? `for project ${claims['project']}` : 'of an unknown project (not a Slipway JWT?)';
  const exp = typeof claims['exp'] === 'number' ? claims['exp'] * 1000 : undefined;
  if (exp !== undefined && exp <= nowMs) {
    return {
      id: 'config',
      title: 'Configuration',
      status: 'fail',
      summary: `the project token ${from} expired at ${isoSeconds(exp)}`,
      details,
      fix: 'get a new project token (slipway tokens create PROJECT, by an administrator) and run slipway login with it',
      code: 'UNAUTHENTICATED',
    };
  }
  if (config.project !== undefined && typeof claims['project'] === 'string' && claims['project'] !== config.project) {
    return {
      id: 'config',
      title: 'Configuration',
      status: 'fail',
      summary: `SLIPWAY_PROJECT is '${config.project}' but the token is for project '${claims['project']}'`,
      details,
      fix: `unset SLIPWAY_PROJECT, or use a token for project ${config.project}`,
      code: 'CONFIG_INVALID',
    };
  }
  return {
    id: 'config',
    title: 'Configuration',
    status: 'ok',
    summary: `token ${project} ${from}${exp !== undefined ? `, valid until ${isoSeconds(exp)}` : ''}`,
    details,
    data: { project: claims['project'], tokenSource: credential.source, tokenExpiresAt: exp === undefined ? undefined : isoSeconds(exp) },
  };
}

async function dnsCheck(host: string, choice: ProxyChoice | undefined, timeoutMs: number): Promise<Omit<DoctorCheck, 'details'> & { details: string[] }> {
  const proxy = choice?.proxy;
  const details: string[] = [];
  if (proxy !== undefined) {
    const proxyHost = proxy.url.hostname.replace(/^\[|\]$/g, '');
    const resolved = await resolve(proxyHost, timeoutMs);
    if (typeof resolved === 'string') {
      return { id: 'dns', title: 'DNS', status: 'fail', summary: `the proxy's name ${proxyHost} does not resolve: ${resolved}`, details, fix: 'check the host in HTTPS_PROXY, and that this machine is on the network (or VPN) where that proxy lives', code: 'PROXY_FAILED' };
    }
    details.push(`proxy ${proxyHost} → ${resolved.join(', ')}`);
    const gateway = await resolve(host, timeoutMs);
    if (typeof gateway === 'string') {
      return { id: 'dns', title: 'DNS', status: 'ok', summary: `proxy ${proxyHost} resolves; ${host} does not resolve here (${gateway}), which is fine: the proxy resolves it`, details };
    }
    return { id: 'dns', title: 'DNS', status: 'ok', summary: `${host} → ${gateway.join(', ')} (the proxy resolves it for itself)`, details };
  }
  const gateway = await resolve(host, timeoutMs);
  if (typeof gateway === 'string') {
    return { id: 'dns', title: 'DNS', status: 'fail', summary: `${host} does not resolve: ${gateway}`, details, fix: 'check the host name in SLIPWAY_GATEWAY; on a private network, check that its VPN is up (or set HTTPS_PROXY if this network reaches the outside through a proxy)', code: 'GATEWAY_UNREACHABLE' };
  }
  return { id: 'dns', title: 'DNS', status: 'ok', summary: net.isIP(host) ? `${host} is an IP address: nothing to resolve` : `${host} → ${gateway.join(', ')}`, details };
}

async function resolve(host: string, timeoutMs: number): Promise<string[] | string> {
  if (net.isIP(host)) return [host];
  let timer: NodeJS.Timeout | undefined;
  try {
    const answers = await Promise.race([
      dns.lookup(host, { all: true }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return answers.map((a) => a.address);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOTFOUND' ? 'no such host (ENOTFOUND)' : (err as Error).message;
  } finally {
    clearTimeout(timer);
  }
}

function proxySelectionCheck(config: DoctorConfig, choice: ProxyChoice | undefined, error: CliError | undefined, authority: string): Omit<DoctorCheck, 'details'> & { details: string[] } {
  if (error !== undefined || choice === undefined) {
    return { id: 'proxy', title: 'Proxy', status: 'fail', summary: error?.message ?? 'cannot tell which proxy to use', details: [], fix: 'correct the proxy variable named above: an http://[user:password@]host:port URL (NO_PROXY: hosts, .domains, *.domains, IPs, CIDR blocks, each optionally :port)', code: 'CONFIG_INVALID' };
  }
  const details: string[] = [];
  if (choice.proxy !== undefined) {
    const credentials = choice.proxy.authorization !== undefined ? ', sending Basic credentials from the URL' : '';
    return { id: 'proxy', title: 'Proxy', status: 'ok', summary: `through proxy ${proxyLabel(choice.proxy)} (from ${choice.variable})${credentials}`, details, data: { proxy: proxyLabel(choice.proxy), variable: choice.variable } };
  }
  if (choice.bypass !== undefined) {
    return { id: 'proxy', title: 'Proxy', status: 'ok', summary: `direct: ${choice.bypass.variable} entry '${choice.bypass.entry}' covers ${authority} (${choice.variable} is not used for it)`, details, data: { proxy: null, bypassedBy: choice.bypass.entry } };
  }
  const plainProxy = ['http_proxy', 'HTTP_PROXY'].find((v) => (config.env[v] ?? '').trim() !== '');
  if (plainProxy !== undefined) {
    return {
      id: 'proxy',
      title: 'Proxy',
      status: 'warn',
      summary: `direct: ${plainProxy} is set but names the proxy for http:// URLs only, and the gateway is https://`,
      details,
      fix: `if this network reaches the gateway only through that proxy, set HTTPS_PROXY to the same value`,
      data: { proxy: null },
    };
  }
  return { id: 'proxy', title: 'Proxy', status: 'ok', summary: 'direct: none of https_proxy, HTTPS_PROXY, all_proxy, ALL_PROXY is set', details, data: { proxy: null } };
}

async function tcpCheck(config: DoctorConfig, host: string, port: number, authority: string, proxy: string | undefined): Promise<Omit<DoctorCheck, 'details'> & { details: string[] }> {
  try {
    const socket = await dialGateway({ env: config.env, host, port, timeoutMs: config.connectTimeoutMs });
    socket.on('error', () => {});
    socket.destroy();
    return { id: 'tcp', title: 'TCP', status: 'ok', summary: proxy === undefined ? `connected to ${authority}` : `proxy ${proxy} opened a tunnel to ${authority} (CONNECT answered 2xx)`, details: [] };
  } catch (err) {
    const error = toCliError(err);
    const fix =
      error.code === 'PROXY_AUTH'
        ? 'put the right credentials in the proxy URL: HTTPS_PROXY=http://USER:PASSWORD@host:port (percent-encode @, : and / in them)'
        : error.code === 'PROXY_FAILED'
          ? /refused CONNECT/.test(error.message)
            ? `the proxy does not let this machine CONNECT to ${authority}: ask its administrators to allow it, or list the gateway in NO_PROXY if it is reachable directly`
            : `check that the proxy named in ${proxy === undefined ? 'HTTPS_PROXY' : `HTTPS_PROXY (${proxy})`} is up and reachable from here, or unset it if this network needs none`
          : `check that the gateway is running and listening on ${authority}, and that no firewall drops the connection; if this network reaches the outside only through a proxy, set HTTPS_PROXY`;
    return { id: 'tcp', title: 'TCP', status: 'fail', summary: error.message, details: [], fix, code: error.code };
  }
}

interface TlsResult {
  check: Omit<DoctorCheck, 'details'> & { details: string[] };
  socket: tls.TLSSocket | undefined;
  issuer: string | undefined;
}

async function tlsCheck(config: DoctorConfig, authority: string, nowMs: number): Promise<TlsResult> {
  let socket: tls.TLSSocket;
  try {
    socket = await connectGatewayTls({ gatewayUrl: config.gatewayUrl, ca: config.ca, env: config.env, alpn: config.transport === 'h2' ? ['h2'] : ['h2', 'http/1.1'], timeoutMs: config.connectTimeoutMs });
  } catch (err) {
    const error = toCliError(err);
    const issuer = /issued by ('[^']*'(?: \([^)]*\))?|an unknown issuer|an unnamed issuer)/.exec(error.message)?.[1];
    return {
      check: {
        id: 'tls',
        title: 'TLS',
        status: 'fail',
        summary: error.message,
        details: [],
        fix: issuer !== undefined
          ? `if ${issuer} is your organisation's TLS-inspecting proxy, save its CA certificate as PEM and set SLIPWAY_CA_CERT (or NODE_EXTRA_CA_CERTS) to that file; if it is the gateway's own CA, pass that with SLIPWAY_CA_CERT or slipway login --ca-cert`
          : 'check that the gateway port speaks TLS and that nothing on the way interferes',
        code: error.code,
        ...(issuer !== undefined ? { data: { issuer } } : {}),
      },
      socket: undefined,
      issuer,
    };
  }
  const cert = socket.getPeerCertificate();
  const issuerFields = cert.issuer as unknown as Record<string, string> | undefined;
  const issuerName = issuerFields?.['CN'] ?? issuerFields?.['O'] ?? 'an unnamed issuer';
  const issuer = `'${issuerName}'${issuerFields?.['O'] && issuerFields['O'] !== issuerName ? ` (${issuerFields['O']})` : ''}`;
  const validTo = Date.parse(cert.valid_to);
  const subject = (cert.subject as unknown as Record<string, string> | undefined)?.['CN'] ?? cert.subjectaltname ?? authority;
  const details = [`names: ${cert.subjectaltname ?? '(none)'}`, `negotiated ${socket.getProtocol() ?? 'TLS'}, ALPN ${socket.alpnProtocol || 'none'}`];
  const data = { issuer: issuerName, issuerOrganization: issuerFields?.['O'], subject, validTo: Number.isFinite(validTo) ? isoSeconds(validTo) : cert.valid_to, alpn: socket.alpnProtocol || null };
  const daysLeft = (validTo - nowMs) / 86_400_000;
  if (Number.isFinite(daysLeft) && daysLeft < 7) {
    return {
      check: { id: 'tls', title: 'TLS', status: 'warn', summary: `certificate for ${subject} issued by ${issuer} expires ${isoSeconds(validTo)} (in ${Math.max(0, Math.floor(daysLeft))} day(s))`, details, fix: "renew the gateway's certificate", data },
      socket,
      issuer,
    };
  }
  return {
    check: { id: 'tls', title: 'TLS', status: 'ok', summary: `certificate for ${subject} issued by ${issuer}, valid until ${Number.isFinite(validTo) ? isoSeconds(validTo) : cert.valid_to}`, details, data },
    socket,
    issuer,
  };
}

async function http2Check(config: DoctorConfig, socket: tls.TLSSocket, issuer: string | undefined): Promise<Omit<DoctorCheck, 'details'> & { details: string[] }> {
  const negotiated = socket.alpnProtocol || 'no protocol';
  if (socket.alpnProtocol !== 'h2') {
    socket.destroy();
    const forced = config.transport === 'h2';
    return {
      id: 'http2',
      title: 'HTTP/2',
      status: forced ? 'fail' : 'warn',
      summary: `the path to the gateway negotiated ${negotiated}, not h2: something on the way ends TLS (the certificate came from ${issuer ?? 'an unnamed issuer'})${forced ? '' : '; tunnels use WebSocket instead, and this is remembered for this network'}`,
      details: [],
      fix: forced ? 'unset SLIPWAY_TRANSPORT (auto falls back to WebSocket), or have the proxy pass HTTP/2 through' : 'nothing needed; for one shared connection instead of one per stream, ask for the gateway to be exempt from TLS inspection',
      ...(forced ? { code: 'TUNNEL_REFUSED' as const } : {}),
      data: { negotiated },
    };
  }
  const session = http2.connect(config.gatewayUrl.origin, { createConnection: () => socket });
  session.on('error', () => {});
  try {
    const status = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer within ${config.connectTimeoutMs} ms`)), config.connectTimeoutMs);
      const request = session.request({ ':method': 'GET', ':path': '/healthz' });
      request.on('response', (headers) => {
        clearTimeout(timer);
        resolve(Number(headers[':status']));
        request.close();
      });
      request.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      request.end();
    });
    if (status !== 200) {
      return { id: 'http2', title: 'HTTP/2', status: 'fail', summary: `negotiated h2, but GET /healthz answered ${status}: the gateway is not ready (or something else answers on its address)`, details: [], fix: 'check the gateway: GET /readyz says 503 while it shuts down', code: 'GATEWAY_UNREACHABLE', data: { negotiated } };
    }
    return { id: 'http2', title: 'HTTP/2', status: 'ok', summary: 'negotiated h2 end to end; the gateway answered GET /healthz over it', details: [], data: { negotiated } };
  } catch (err) {
    return { id: 'http2', title: 'HTTP/2', status: 'fail', summary: `negotiated h2, but a request over it failed: ${(err as Error).message}`, details: [], fix: 'something on the path breaks HTTP/2 after negotiating it; set SLIPWAY_TRANSPORT=websocket to avoid it', code: 'TUNNEL_FAILED', data: { negotiated } };
  } finally {
    session.destroy();
  }
}

// An upgrade without a token: the gateway itself refuses it with 401 and its own error header.
// Anything else answered it (a proxy that blocks upgrades, a load balancer's page).
async function webSocketCheck(config: DoctorConfig, http2Works: boolean): Promise<Omit<DoctorCheck, 'details'> & { details: string[] }> {
  const id = 'websocket';
  const title = 'WebSocket';
  if (config.transport === 'h2') return { id, title, status: 'skip', summary: 'skipped: transport forced to h2', details: [] };
  // Only a failure when WebSocket is what the tunnels would need.
  const failing = http2Works ? 'warn' : 'fail';
  let socket: tls.TLSSocket | undefined;
  try {
    socket = await connectGatewayTls({ gatewayUrl: config.gatewayUrl, ca: config.ca, env: config.env, alpn: ['http/1.1'], timeoutMs: config.connectTimeoutMs });
    socket.write(
      `GET /v1/tunnel HTTP/1.1\r\nHost: ${config.gatewayUrl.host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n` +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nslipway-platform: linux/amd64\r\n\r\n`,
    );
    const abort = AbortSignal.timeout(config.connectTimeoutMs);
    const head = await readHttpResponseHead(socket, 64 * 1024, abort);
    const wire = head.headers.get('slipway-error');
    if (head.statusCode === 401 && wire === 'UNAUTHENTICATED') {
      return { id, title, status: 'ok', summary: 'the gateway answered an HTTP/1.1 WebSocket upgrade itself (401 without a token, as expected)', details: [] };
    }
    return {
      id,
      title,
      status: failing,
      summary: `a WebSocket upgrade to /v1/tunnel got "${head.statusLine}"${wire ? ` (${wire})` : ' without the gateway\'s error header: something else answered'}`,
      details: [],
      fix: http2Works ? 'nothing needed while HTTP/2 works; behind a proxy without HTTP/2, allow WebSocket upgrades to the gateway' : 'allow WebSocket upgrades to the gateway on the proxy, or let HTTP/2 through',
      ...(failing === 'fail' ? { code: 'TUNNEL_REFUSED' as const } : {}),
    };
  } catch (err) {
    const error = toCliError(err);
    return { id, title, status: failing, summary: `a WebSocket upgrade to /v1/tunnel failed: ${error.message}`, details: [], fix: 'allow WebSocket upgrades to the gateway, or let HTTP/2 through', ...(failing === 'fail' ? { code: error.code === 'INTERNAL' ? ('TUNNEL_REFUSED' as const) : error.code } : {}) };
  } finally {
    socket?.destroy();
  }
}

async function authenticationCheck(config: DoctorConfig, options: DoctorOptions): Promise<{ check: Omit<DoctorCheck, 'details'> & { details: string[] }; token: string | undefined }> {
  const connection = new GatewayConnection({ ...config, log: options.log, ...(options.transportMemory ? { transportMemory: options.transportMemory } : {}) });
  const timeoutMs = Math.max(config.connectTimeoutMs, 10_000);
  const credential = config.credential!;
  const details: string[] = [];
  try {
    let token: string;
    if (credential.kind === 'token') token = credential.token;
    else {
      const exchange = new OidcTokenExchange({ project: credential.project, audience: credential.audience, env: config.env, log: options.log, timeoutMs });
      token = await exchange.token(connection);
      details.push(`exchanged this ${CI_NAMES[credential.ci]} job's OIDC identity for a token for project ${credential.project}`);
    }
    const build = await callGatewayApi<{ buildId: string; project: string }>(connection, { method: 'POST', path: '/v1/builds', token, body: { platforms: config.platforms }, timeoutMs });
    await callGatewayApi(connection, { method: 'POST', path: `/v1/builds/${build.buildId}/cancel`, token: (build as { token?: string }).token ?? token, body: { reason: 'slipway doctor' }, timeoutMs }).catch(() => {});
    return { check: { id: 'auth', title: 'Authentication', status: 'ok', summary: `the gateway accepted the token for project ${build.project} (it created a build, cancelled at once)`, details, data: { project: build.project } }, token };
  } catch (err) {
    const error = toCliError(err);
    const fix =
      error.code === 'UNAUTHENTICATED'
        ? 'the token is not valid at this gateway (expired, revoked, or made for another one): get a new project token and run slipway login with it'
        : error.code === 'FORBIDDEN'
          ? "the token may not create builds: it needs the 'build' scope (slipway tokens create PROJECT --scope build)"
          : error.code === 'RATE_LIMITED'
            ? 'wait a little and run slipway doctor again'
            : 'see the gateway\'s words above';
    return { check: { id: 'auth', title: 'Authentication', status: 'fail', summary: error.message, details, fix, code: error.code }, token: undefined };
  } finally {
    connection.close();
  }
}

async function builderCheck(client: TunnelClient, platform: Platform, config: DoctorConfig): Promise<Omit<DoctorCheck, 'details'> & { details: string[] }> {
  const id = `builder:${platform}`;
  const title = `Builder ${platform}`;
  let tunnel: TunnelStream | undefined;
  try {
    tunnel = await client.open(platform);
    const opened = tunnel;
    await new Promise<void>((resolve, reject) => {
      opened.once('open', () => resolve());
      opened.once('remote-end', (error) => reject(error ?? new CliError('TUNNEL_REFUSED', 'the tunnel ended before it opened')));
    });
    const duplex = opened.readable === (opened.writable as unknown) ? (opened.readable as unknown as Duplex) : Duplex.from({ readable: opened.readable, writable: opened.writable });
    const workers: BuildkitWorker[] = await listWorkersOver(() => duplex, Math.max(config.connectTimeoutMs, 10_000));
    const builder = client.builds.builders.get(platform);
    const platforms = [...new Set(workers.flatMap((w) => w.platforms))];
    const version = workers.find((w) => w.buildkitVersion)?.buildkitVersion;
    const details = workers.map((w) => `worker ${w.id}: ${w.platforms.join(', ') || 'no platforms'}`);
    const data = { builder, transport: client.transport, workers: workers.map((w) => ({ id: w.id, platforms: w.platforms })), buildkitVersion: version };
    const summary = `${builder ? `builder ${builder}` : 'a builder'} answered ListWorkers through a ${client.transport === 'websocket' ? 'WebSocket' : 'HTTP/2'} tunnel: ${workers.length} worker(s) for ${platforms.join(', ') || 'no platform'}${version ? `, BuildKit ${version}` : ''}`;
    if (!platforms.some((p) => p === platform || p.startsWith(`${platform}/`))) {
      return { id, title, status: 'warn', summary, details, fix: `its BuildKit does not list ${platform}: the agent claims a platform its machine cannot build (run it on ${platform}, or install QEMU binfmt handlers there)`, data };
    }
    return { id, title, status: 'ok', summary, details, data };
  } catch (err) {
    const error = err instanceof CliError ? err : new CliError('TUNNEL_FAILED', `the builder did not answer ListWorkers: ${(err as Error).message}`);
    // The gateway's own words, without the request they answered.
    const answer = gatewayAnswerOf(err);
    const summary = answer ? `${answer.message}${answer.wireCode ? ` (${answer.wireCode})` : ''}` : error.message;
    const fix =
      error.code === 'NO_AGENT'
        ? `no ${platform} builder is available to this project: start an agent with --platform ${platform} (or ask your Slipway operator for ${platform} builders); builds for the other platforms are not affected`
        : error.code === 'TUNNEL_FAILED'
          ? "the builder's BuildKit did not answer: check the agent's --upstream and that BuildKit runs there"
          : "see the gateway's words above";
    return { id, title, status: 'fail', summary, details: [], fix, code: error.code };
  } finally {
    tunnel?.cancel();
    if (tunnel) client.streamEnded();
  }
}

function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const MARKS: Record<CheckStatus, string> = { ok: '✔', warn: '▲', fail: '✘', skip: '-' };

/** The report for people, in wrangler's manner: one line per check, then a block per problem. */
export function renderDoctorReport(report: DoctorReport): string {
  const width = Math.max(...report.checks.map((c) => c.title.length));
  const lines = [`slipway doctor${report.gateway ? `: ${report.gateway}` : ''}`, ''];
  for (const check of report.checks) {
    lines.push(`${MARKS[check.status]} ${check.title.padEnd(width)}  ${clean(check.summary)}`);
    if (check.status === 'ok') for (const detail of check.details) lines.push(`  ${' '.repeat(width)}  ${clean(detail)}`);
  }
  for (const check of report.checks) {
    if (check.status !== 'fail' && check.status !== 'warn') continue;
    lines.push('', `${check.status === 'fail' ? '✘ [ERROR]' : '▲ [WARNING]'} ${check.title}: ${clean(check.summary)}`, '');
    for (const detail of check.details) lines.push(`  ${clean(detail)}`);
    if (check.fix) lines.push(`  Fix: ${clean(check.fix)}`);
  }
  const failed = report.checks.filter((c) => c.status === 'fail').length;
  const warned = report.checks.filter((c) => c.status === 'warn').length;
  lines.push('', failed > 0 ? `${failed} check(s) failed${warned ? `, ${warned} warning(s)` : ''}.` : `All checks passed${warned ? ` (${warned} warning(s))` : ''}.`);
  return `${lines.join('\n')}\n`;
}

function clean(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, '?');
}
