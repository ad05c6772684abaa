// The agent's EC2 instance identity: read through IMDSv2 from a fake metadata service on a real
// socket, turned into configuration, and sent on the connect request.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type net from 'node:net';
import tls from 'node:tls';
import { Header } from '@slipway/proto';
import { AgentError } from '../src/agentError.js';
import { applyInstanceIdentity, loadConfig, type AgentConfig } from '../src/config.js';
import { dialGateway } from '../src/gatewayDialer.js';
import { fetchInstanceIdentity, IMDS_DEFAULT_URL, instanceIdentityHeaders, type InstanceIdentity } from '../src/instanceIdentity.js';
import { makeTestTls, type TestTls } from './testTls.js';

const INSTANCE_ID = 'i-0123456789abcdef0';
// Key order and spacing as IMDS serves it; the signature covers exactly these bytes.
const DOCUMENT = Buffer.from(
  `{
  "accountId" : "123456789012",
  "architecture" : "x86_64",
  "availabilityZone" : "eu-west-1a",
  "imageId" : "ami-0abcdef1234567890",
  "instanceId" : "${INSTANCE_ID}",
  "instanceType" : "c6id.xlarge",
  "pendingTime" : "2026-11-27T10:00:00Z",
  "privateIp" : "10.0.1.17",
  "region" : "eu-west-1",
  "version" : "2017-09-30"
}`,
);
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const SIGNATURE = sign('sha256', DOCUMENT, privateKey).toString('base64');
// IMDS breaks the base64 signature into lines.
const SIGNATURE_AS_SERVED = SIGNATURE.replace(/(.{64})/g, '$1\n');

interface Seen {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
}

interface FakeImdsBehaviour {
  document?: Buffer;
  signature?: string;
  /** Status for PUT /latest/api/token instead of a token. */
  tokenStatus?: number;
  /** Accept no token on GETs, not even the one just issued. */
  forgetTokens?: boolean;
  /** Never answer this path (the connection stays open). */
  hang?: string;
  /** Serve this path chunked, without content-length. */
  chunked?: string;
}

// An IMDSv2-only metadata service: GETs need a token from PUT /latest/api/token, exactly like an
// instance launched with HttpTokens=required (a GET without one gets 401).
class FakeImds {
  readonly seen: Seen[] = [];
  private readonly server: http.Server;
  private readonly tokens = new Set<string>();
  private readonly sockets = new Set<net.Socket>();
  private issued = 0;

  constructor(private readonly behaviour: FakeImdsBehaviour = {}) {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  get url(): URL {
    return new URL(`http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`);
  }

  async listen(): Promise<void> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = req.url ?? '';
    this.seen.push({ method: req.method ?? '', path, headers: req.headers });
    req.resume();
    if (path === this.behaviour.hang) return;
    if (req.method === 'PUT' && path === '/latest/api/token') {
      const ttl = Number(req.headers['x-aws-ec2-metadata-token-ttl-seconds']);
      if (this.behaviour.tokenStatus !== undefined) return this.answer(res, this.behaviour.tokenStatus, '');
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21_600) return this.answer(res, 400, '');
      const token = `AQAEA-fake-token-${++this.issued}==`;
      this.tokens.add(token);
      return this.answer(res, 200, token);
    }
    if (req.method !== 'GET') return this.answer(res, 405, '');
    const token = req.headers['x-aws-ec2-metadata-token'];
    if (typeof token !== 'string' || !this.tokens.has(token) || this.behaviour.forgetTokens) return this.answer(res, 401, '');
    if (path === '/latest/dynamic/instance-identity/document') return this.answer(res, 200, this.behaviour.document ?? DOCUMENT, path);
    if (path === '/latest/dynamic/instance-identity/signature') return this.answer(res, 200, this.behaviour.signature ?? SIGNATURE_AS_SERVED, path);
    this.answer(res, 404, '');
  }

  private answer(res: http.ServerResponse, status: number, body: string | Buffer, path?: string): void {
    if (path !== undefined && path === this.behaviour.chunked) {
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.write(body);
      res.end();
      return;
    }
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }
}

async function startImds(t: { after: (fn: () => Promise<void>) => void }, behaviour?: FakeImdsBehaviour): Promise<FakeImds> {
  const imds = new FakeImds(behaviour);
  await imds.listen();
  t.after(() => imds.close());
  return imds;
}

async function refusal(promise: Promise<unknown>): Promise<AgentError> {
  const err = await promise.then(
    () => assert.fail('expected a refusal'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof AgentError, `expected an AgentError, got ${String(err)}`);
  return err;
}

test('reads the document and signature through IMDSv2: a session token first, then GETs that carry it', async (t) => {
  const imds = await startImds(t);
  const identity = await fetchInstanceIdentity({ baseUrl: imds.url, timeoutMs: 10_000 });

  assert.ok(identity.document.equals(DOCUMENT), 'the document bytes are kept exactly as served');
  assert.equal(identity.signature, SIGNATURE, 'line breaks are taken out of the signature, nothing else');
  assert.equal(identity.instanceId, INSTANCE_ID);
  assert.equal(identity.accountId, '123456789012');
  assert.equal(identity.region, 'eu-west-1');
  assert.equal(identity.architecture, 'x86_64');

  assert.deepEqual(
    imds.seen.map((r) => `${r.method} ${r.path}`),
    ['PUT /latest/api/token', 'GET /latest/dynamic/instance-identity/document', 'GET /latest/dynamic/instance-identity/signature'],
  );
  assert.equal(imds.seen[0]!.headers['x-aws-ec2-metadata-token-ttl-seconds'], '60');
  assert.equal(imds.seen[1]!.headers['x-aws-ec2-metadata-token'], 'AQAEA-fake-token-1==');
  assert.equal(imds.seen[2]!.headers['x-aws-ec2-metadata-token'], 'AQAEA-fake-token-1==');
});

test('the fake metadata service is IMDSv2-only: a GET without a session token gets 401', async (t) => {
  const imds = await startImds(t);
  const res = await fetch(new URL('/latest/dynamic/instance-identity/document', imds.url));
  await res.arrayBuffer();
  assert.equal(res.status, 401);
});

test('a metadata service that will not take its own session token is reported with the status', async (t) => {
  const imds = await startImds(t, { forgetTokens: true });
  const err = await refusal(fetchInstanceIdentity({ baseUrl: imds.url, timeoutMs: 10_000 }));
  assert.equal(err.code, 'UNAUTHENTICATED');
  assert.match(err.message, /answered 401 to GET \/latest\/dynamic\/instance-identity\/document/);
  assert.match(err.message, /did not accept the session token/);
});

test('a metadata service that is turned off (403 to the token request) says so', async (t) => {
  const imds = await startImds(t, { tokenStatus: 403 });
  const err = await refusal(fetchInstanceIdentity({ baseUrl: imds.url, timeoutMs: 10_000 }));
  assert.match(err.message, /answered 403 to PUT \/latest\/api\/token/);
  assert.match(err.message, /turned off/);
});

test('no metadata service at the address: the connection error is named', async (t) => {
  const imds = await startImds(t);
  const url = imds.url;
  await imds.close();
  const err = await refusal(fetchInstanceIdentity({ baseUrl: url, timeoutMs: 10_000 }));
  assert.match(err.message, new RegExp(`cannot read the session token from IMDS at ${url.origin.replace(/\./g, '\\.')} \\(PUT /latest/api/token\\): .*ECONNREFUSED`));
});

test('a metadata service that never answers the token request runs into the time limit, with the hop-limit hint', async (t) => {
  const imds = await startImds(t, { hang: '/latest/api/token' });
  const err = await refusal(fetchInstanceIdentity({ baseUrl: imds.url, timeoutMs: 200 }));
  assert.match(err.message, /session token .*no answer within 200 ms/);
  assert.match(err.message, /hop limit/);
});

test('a caller that gives up cancels the exchange', async (t) => {
  const imds = await startImds(t, { hang: '/latest/dynamic/instance-identity/signature' });
  const controller = new AbortController();
  const fetching = fetchInstanceIdentity({ baseUrl: imds.url, timeoutMs: 60_000, signal: controller.signal });
  while (!imds.seen.some((r) => r.path.endsWith('/signature'))) await new Promise((r) => setImmediate(r));
  controller.abort();
  const err = await refusal(fetching);
  assert.match(err.message, /instance identity signature .*cancelled/);
});

test('answers larger than any IMDS answer are refused, announced or not', async (t) => {
  const huge = Buffer.alloc(64 * 1024, 'x');
  const announced = await startImds(t, { document: huge });
  let err = await refusal(fetchInstanceIdentity({ baseUrl: announced.url, timeoutMs: 10_000 }));
  assert.match(err.message, /instance identity document .*65536 bytes, more than the 4096-byte limit/);

  const chunked = await startImds(t, { document: huge, chunked: '/latest/dynamic/instance-identity/document' });
  err = await refusal(fetchInstanceIdentity({ baseUrl: chunked.url, timeoutMs: 10_000 }));
  assert.match(err.message, /instance identity document .*more than the 4096-byte limit/);
});

test('a document that is not JSON, or lacks the fields the gateway checks, is refused with what is wrong', async (t) => {
  const garbled = await startImds(t, { document: Buffer.from('<html>captive portal</html>') });
  let err = await refusal(fetchInstanceIdentity({ baseUrl: garbled.url, timeoutMs: 10_000 }));
  assert.match(err.message, /instance identity document that is not JSON/);

  const partial = await startImds(t, { document: Buffer.from(JSON.stringify({ instanceId: 'web-1', region: 'eu-west-1', architecture: 'arm64' })) });
  err = await refusal(fetchInstanceIdentity({ baseUrl: partial.url, timeoutMs: 10_000 }));
  assert.match(err.message, /instanceId is 'web-1', expected an instance id/);
  assert.match(err.message, /accountId is missing, expected a 12-digit AWS account id/);
});

test('a signature that is not base64 is refused before it could reach a header', async (t) => {
  const imds = await startImds(t, { signature: 'not base64\r\nx-injected: yes' });
  const err = await refusal(fetchInstanceIdentity({ baseUrl: imds.url, timeoutMs: 10_000 }));
  assert.match(err.message, /signature that is not base64/);
  assert.throws(() => instanceIdentityHeaders({ document: DOCUMENT, signature: 'a\r\nb' }), /not base64/);
});

// --- configuration ---

const BASE_ENV = {
  SLIPWAY_GATEWAY: 'https://gw.example.com',
  SLIPWAY_AGENT_TOKEN: 'join-token',
  SLIPWAY_PLATFORM: 'linux/amd64',
  SLIPWAY_UPSTREAM: 'buildkitd:unix:///run/buildkit/buildkitd.sock',
};

function identityOf(overrides: Partial<InstanceIdentity> = {}): InstanceIdentity {
  return { document: DOCUMENT, signature: SIGNATURE, instanceId: INSTANCE_ID, accountId: '123456789012', region: 'eu-west-1', architecture: 'x86_64', ...overrides };
}

function configProblems(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AgentError);
    assert.equal(err.code, 'CONFIG_INVALID');
    return err.message;
  }
  return assert.fail('expected a configuration problem');
}

test('identity is none by default; --identity imds and --imds-url (or their variables) turn it on', () => {
  const plain = loadConfig(BASE_ENV);
  assert.equal(plain.identitySource, 'none');
  assert.equal(plain.imdsUrl.href, `${IMDS_DEFAULT_URL}/`);
  assert.equal(plain.instanceIdentity, undefined);

  const fromEnv = loadConfig({ ...BASE_ENV, SLIPWAY_AGENT_IDENTITY: 'imds', SLIPWAY_IMDS_URL: 'http://127.0.0.1:8111' });
  assert.equal(fromEnv.identitySource, 'imds');
  assert.equal(fromEnv.imdsUrl.href, 'http://127.0.0.1:8111/');

  const fromFlags = loadConfig({ ...BASE_ENV, SLIPWAY_AGENT_IDENTITY: 'none' }, ['--identity', 'imds', '--imds-url=http://[fd00:ec2::254]']);
  assert.equal(fromFlags.identitySource, 'imds');
  assert.equal(fromFlags.imdsUrl.hostname, '[fd00:ec2::254]');
});

test('identity settings that cannot work are reported together with the other problems', () => {
  const message = configProblems(() =>
    loadConfig({ ...BASE_ENV, SLIPWAY_MAX_BUILDS: '0' }, ['--identity', 'tpm', '--imds-url', 'https://169.254.169.254/latest']),
  );
  assert.match(message, /SLIPWAY_AGENT_IDENTITY must be one of none, imds; got 'tpm'/);
  assert.match(message, /SLIPWAY_IMDS_URL must be http:\/\/HOST\[:PORT\] with nothing after it/);
  assert.match(message, /SLIPWAY_MAX_BUILDS/);

  const ids = configProblems(() => loadConfig({ ...BASE_ENV, SLIPWAY_AGENT_ID: 'builder-7', SLIPWAY_INSTANCE_ID: 'vm-7' }, ['--identity', 'imds']));
  assert.match(ids, /SLIPWAY_AGENT_ID 'builder-7' is not one/);
  assert.match(ids, /SLIPWAY_INSTANCE_ID 'vm-7' is not an EC2 instance id/);
});

test('with imds the agent id and instance id come from the document', () => {
  const config = applyInstanceIdentity(loadConfig({ ...BASE_ENV, SLIPWAY_AGENT_IDENTITY: 'imds' }), identityOf());
  assert.equal(config.agentId, INSTANCE_ID);
  assert.equal(config.instanceId, INSTANCE_ID);
  assert.ok(config.instanceIdentity?.document.equals(DOCUMENT));

  // Configured values that agree with the document are fine.
  const agreeing = loadConfig({ ...BASE_ENV, SLIPWAY_AGENT_IDENTITY: 'imds', SLIPWAY_AGENT_ID: INSTANCE_ID, SLIPWAY_INSTANCE_ID: INSTANCE_ID });
  assert.equal(applyInstanceIdentity(agreeing, identityOf()).agentId, INSTANCE_ID);
});

test('a configured agent id, instance id or platform that contradicts the document is a configuration problem', () => {
  const config: AgentConfig = loadConfig(
    { ...BASE_ENV, SLIPWAY_AGENT_IDENTITY: 'imds', SLIPWAY_AGENT_ID: 'i-0aaaaaaaaaaaaaaaa', SLIPWAY_INSTANCE_ID: 'i-0bbbbbbbbbbbbbbbb', SLIPWAY_PLATFORM: 'linux/arm64' },
  );
  const message = configProblems(() => applyInstanceIdentity(config, identityOf()));
  assert.match(message, new RegExp(`SLIPWAY_AGENT_ID is 'i-0aaaaaaaaaaaaaaaa' but this is instance ${INSTANCE_ID}`));
  assert.match(message, new RegExp(`SLIPWAY_INSTANCE_ID is 'i-0bbbbbbbbbbbbbbbb' but the instance identity document is for ${INSTANCE_ID}`));
  assert.match(message, /SLIPWAY_PLATFORM is linux\/arm64 but instance .* is x86_64 \(linux\/amd64\)/);

  const i386 = configProblems(() => applyInstanceIdentity(loadConfig({ ...BASE_ENV, SLIPWAY_AGENT_IDENTITY: 'imds' }), identityOf({ architecture: 'i386' })));
  assert.match(i386, /is i386; Slipway builds on x86_64 \(linux\/amd64\) and arm64 \(linux\/arm64\) instances/);
});

// --- the connect request ---

let pki: TestTls;
before(async () => {
  pki = await makeTestTls();
});
after(async () => {
  await pki.cleanup();
});

// A gateway that records the agent's connect request head and refuses it, which ends the dial.
async function recordConnectRequest(t: { after: (fn: () => Promise<void>) => void }, instanceIdentity: InstanceIdentity | undefined): Promise<Map<string, string>> {
  const heads: string[] = [];
  const server = tls.createServer({ key: pki.serverKeyPem, cert: pki.serverCertPem, ALPNProtocols: ['http/1.1'] }, (socket) => {
    socket.on('error', () => {});
    let head = '';
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      heads.push(head);
      const body = JSON.stringify({ error: { code: 'FORBIDDEN', message: 'recorded' } });
      socket.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const err = await refusal(
    dialGateway({
      gatewayUrl: new URL(`https://127.0.0.1:${(server.address() as net.AddressInfo).port}`),
      token: 'join-token',
      agentId: INSTANCE_ID,
      platform: 'linux/amd64',
      version: 'test',
      ca: Buffer.from(pki.caCertPem),
      connectTimeoutMs: 10_000,
      instanceIdentity,
      signal: new AbortController().signal,
    }),
  );
  assert.equal(err.code, 'UNAUTHENTICATED');
  assert.equal(heads.length, 1);
  const headers = new Map<string, string>();
  for (const line of heads[0]!.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  return headers;
}

test('the connect request carries the document (base64 of its exact bytes) and the signature', async (t) => {
  const headers = await recordConnectRequest(t, identityOf());
  const document = headers.get(Header.instanceDocument);
  assert.ok(document !== undefined, `no ${Header.instanceDocument} header`);
  assert.ok(Buffer.from(document, 'base64').equals(DOCUMENT));
  assert.equal(headers.get(Header.instanceSignature), SIGNATURE);
  assert.equal(headers.get(Header.agentId), INSTANCE_ID);
});

test('without an instance identity the connect request has no identity headers', async (t) => {
  const headers = await recordConnectRequest(t, undefined);
  assert.equal(headers.has(Header.instanceDocument), false);
  assert.equal(headers.has(Header.instanceSignature), false);
  assert.equal(headers.get(Header.agentId), INSTANCE_ID);
});
