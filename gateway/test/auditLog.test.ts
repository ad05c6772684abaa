import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, sign } from 'node:crypto';
import { AuditLog, redactSecrets, type AuthAuditRecord } from '../src/auditLog.js';

// Real signed tokens, made here so the test depends on nothing but node:crypto.
const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
function es256(payload: Record<string, unknown>): string {
  const input = `${b64url({ alg: 'ES256', kid: 'k1', typ: 'JWT' })}.${b64url(payload)}`;
  return `${input}.${sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}
function hs256(payload: Record<string, unknown>): string {
  const input = `${b64url({ alg: 'HS256' })}.${b64url(payload)}`;
  return `${input}.${createHmac('sha256', 'k').update(input).digest('base64url')}`;
}
const TOKEN = es256({ iss: 'slipway', aud: 'slipway', sub: 'ci', project: 'web', scope: 'build', exp: 2_000_000_000 });
const SIGNATURE = TOKEN.split('.')[2]!;
const PAYLOAD = TOKEN.split('.')[1]!;
const T0 = Date.UTC(2026, 10, 27, 12, 0, 0);

function capture(): { log: AuditLog; lines: string[]; records: () => AuthAuditRecord[] } {
  const lines: string[] = [];
  const log = new AuditLog({ write: (line) => lines.push(line), now: () => T0 });
  return { log, lines, records: () => lines.map((l) => JSON.parse(l) as AuthAuditRecord) };
}

function assertNoSecret(text: string): void {
  assert.ok(!text.includes(TOKEN), 'the token');
  assert.ok(!text.includes(SIGNATURE), 'its signature');
  assert.ok(!text.includes(PAYLOAD), 'its claims');
}

test('an allow event is one JSON line with the fields of the schema', () => {
  const { log, lines, records } = capture();
  log.auth({ path: 'tunnel', decision: 'allow', subject: 'ci', project: 'web', tokenId: '6f1c2a4e-93a1-4c55-9b8e-0d2f4c1b7a90', source: '2001:db8::7', transport: 'h2' });
  assert.equal(lines.length, 1);
  assert.ok(lines[0]!.endsWith('}\n') && !lines[0]!.slice(0, -1).includes('\n'));
  assert.deepEqual(records()[0], {
    time: '2026-11-27T12:00:00.000Z',
    event: 'auth',
    path: 'tunnel',
    decision: 'allow',
    subject: 'ci',
    project: 'web',
    tokenId: '6f1c2a4e-93a1-4c55-9b8e-0d2f4c1b7a90',
    source: '2001:db8::7',
    transport: 'h2',
  });
});

test('a deny event carries its code and reason; an agent event its agent id', () => {
  const { log, records } = capture();
  log.auth({ path: 'builds', decision: 'deny', code: 'UNAUTHENTICATED', reason: "token 'aud' claim is 'slipway-agent', expected 'slipway'", source: '203.0.113.5', transport: 'https' });
  log.auth({ path: 'agent', decision: 'deny', code: 'FORBIDDEN', reason: "agent id 'builder-01.eu-west-1.compute.internal' does not match the token's sub", agentId: 'builder-01.eu-west-1.compute.internal', source: undefined, transport: 'http/1.1' });
  log.auth({ path: 'agent', decision: 'allow', agentId: 'i-0123456789abcdef0', source: '10.0.0.9', transport: 'http/1.1' });
  const [builds, agentDeny, agentAllow] = records();
  assert.deepEqual(builds, {
    time: '2026-11-27T12:00:00.000Z',
    event: 'auth',
    path: 'builds',
    decision: 'deny',
    code: 'UNAUTHENTICATED',
    reason: "token 'aud' claim is 'slipway-agent', expected 'slipway'",
    source: '203.0.113.5',
    transport: 'https',
  });
  assert.equal(agentDeny!.code, 'FORBIDDEN');
  assert.equal(agentDeny!.agentId, 'builder-01.eu-west-1.compute.internal', 'host names are not mistaken for tokens');
  assert.equal(agentDeny!.reason, "agent id 'builder-01.eu-west-1.compute.internal' does not match the token's sub");
  assert.equal(agentDeny!.source, 'unknown', 'a socket that has gone has no address');
  assert.deepEqual(Object.keys(agentAllow!), ['time', 'event', 'path', 'decision', 'agentId', 'source', 'transport']);
});

test('a token passed in a reason (or any other field) never reaches the output', () => {
  const { log, lines } = capture();
  const carriers = [
    TOKEN,
    `signature verification failed for ${TOKEN}`,
    `Authorization header was 'Bearer ${TOKEN}'`,
    `authorization: bearer ${TOKEN}`,
    `{"authorization":"Bearer ${TOKEN}"}`,
    `token=${TOKEN}&x=1`,
    `jwt_${TOKEN}`,
    `/v1/tunnel?access_token=${TOKEN}`,
    `Bearer%20${TOKEN}`,
    `Bearer\u0000${TOKEN}`,
    `${'x '.repeat(2000)}${TOKEN}`,
    `${TOKEN}.extra.segments`,
  ];
  for (const reason of carriers) {
    log.auth({ path: 'tunnel', decision: 'deny', code: 'UNAUTHENTICATED', reason, subject: reason, project: reason, tokenId: reason, agentId: reason, source: reason, transport: reason });
  }
  assert.equal(lines.length, carriers.length);
  for (const line of lines) assertNoSecret(line);
  assert.match(lines[0]!, /"reason":"\[redacted\]"/);
  assert.match(lines[2]!, /"reason":"Authorization header was 'Bearer \[redacted\]'"/);
});

test('Basic and Bearer credentials are removed, whatever they look like', () => {
  const basic = Buffer.from('deploy:hunter2-password').toString('base64');
  assert.equal(redactSecrets(`Proxy-Authorization: Basic ${basic}`), 'Proxy-Authorization: Basic [redacted]');
  assert.equal(redactSecrets(`basic ${basic}, then more`), 'basic [redacted], then more');
  assert.equal(redactSecrets('Authorization: Bearer opaque-api-key_123~'), 'Authorization: Bearer [redacted]');
  assert.equal(redactSecrets("BEARER 'abc'"), 'BEARER [redacted]\'');
  // Our own messages about the header stay readable.
  assert.equal(redactSecrets("missing Authorization header; expected 'Bearer <token>'"), "missing Authorization header; expected 'Bearer <token>'");
  assert.equal(redactSecrets("Authorization scheme is 'Basic', expected 'Bearer'"), "Authorization scheme is 'Basic', expected 'Bearer'");
});

test('anything shaped like a JWT goes; addresses, host names and ids stay', () => {
  const hs = hs256({ sub: 'x' });
  const unsigned = `${b64url({ alg: 'none' })}.${b64url({ sub: 'x' })}.`;
  const jwe = `${b64url({ alg: 'dir', enc: 'A256GCM' })}..${'a'.repeat(16)}.${'b'.repeat(30)}.${'c'.repeat(22)}`;
  const padded = `${Buffer.from('{"alg":"HS256"}').toString('base64')}.${Buffer.from('{"s":1}').toString('base64')}.sig`;
  const pretty = `${Buffer.from('{\n  "alg": "ES256"\n}').toString('base64url')}.${b64url({})}.${'s'.repeat(86)}`;
  for (const t of [hs, unsigned, jwe, padded, pretty]) assert.equal(redactSecrets(`got ${t} here`), 'got [redacted] here', t);
  for (const keep of [
    '203.0.113.7',
    '2001:db8::1',
    'gateway.example.com:443',
    'ip-10-0-3-17.eu-west-1.compute.internal',
    'slipway-agent v1.2.3',
    'node-1.build.svc.cluster.local',
    '6f1c2a4e-93a1-4c55-9b8e-0d2f4c1b7a90',
    'linux/amd64',
  ]) {
    assert.equal(redactSecrets(keep), keep);
  }
});

test('every field is capped and cannot break the line', () => {
  const { log, lines, records } = capture();
  log.auth({
    path: 'oidc',
    decision: 'deny',
    code: 'UNAUTHENTICATED',
    reason: `${'r'.repeat(5000)}`,
    subject: `line one\nline two\u2028three\u009b[31m`,
    project: 'p'.repeat(300),
    source: '198.51.100.4',
    transport: 'h2',
  });
  assert.equal(lines.length, 1);
  assert.equal(lines[0]!.split('\n').length, 2, 'one line, one trailing newline');
  assert.ok(!/[\u2028\u2029\u0080-\u009f]/.test(lines[0]!));
  const r = records()[0]!;
  assert.equal(r.reason!.length, 1024);
  assert.ok(r.reason!.endsWith('…'));
  assert.equal(r.project!.length, 256);
  assert.equal(r.subject, 'line one line two three [31m');
});

test('a token cut off by the cap is removed before it is cut', () => {
  const { log, records } = capture();
  // The token straddles the reason's cap: capping first would leave a prefix with its claims.
  log.auth({ path: 'admin', decision: 'deny', code: 'FORBIDDEN', reason: `${'x'.repeat(900)} ${TOKEN}`, source: '192.0.2.1', transport: 'h2' });
  const reason = records()[0]!.reason!;
  assertNoSecret(reason);
  assert.ok(!reason.includes(TOKEN.slice(0, 60)), 'not even the start of it');
  assert.ok(reason.endsWith(' [redacted]'));
});
