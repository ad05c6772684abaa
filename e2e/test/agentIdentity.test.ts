// An EC2 builder's agent proves which instance it runs on with its signed instance identity
// document; the gateway admits it only as the instance the fleet launched. The real agent program
// fetches the document from a fake IMDSv2; forged and mismatched documents are refused at the
// agent connect request.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import fs from 'node:fs';
import { once } from 'node:events';
import { AGENT_CONNECT_PATH } from '@slipway/proto';
import { AgentAdmission, InstanceIdentityVerifier, type FleetInstanceFacts } from '@slipway/gateway';
import { identityDocument, makeSigningAuthority, signedHeaders, type SigningAuthority } from '@slipway/gateway/test-support';
import { startStack, startEchoServer, startAgentProcess, startFakeImds, type SlipwayStack, type EchoServer, type FakeImds } from '@slipway/e2e';

const INSTANCE = 'i-0aaaabbbbccccdddd';
const ACCOUNT = '123456789012';
let stack: SlipwayStack;
let echo: EchoServer;
let aws: SigningAuthority;
let forger: SigningAuthority;
let imds: FakeImds;
const fleet = new Map<string, FleetInstanceFacts>();

before(async () => {
  aws = await makeSigningAuthority('aws-eu-west-1');
  forger = await makeSigningAuthority('not-aws');
  fleet.set(INSTANCE, { fleet: 'test', platform: 'linux/amd64', project: 'web', state: 'running', region: 'eu-west-1', accountId: ACCOUNT });
  fleet.set('i-0eeeeffff00001111', { fleet: 'test', platform: 'linux/arm64', project: undefined, state: 'running' });
  echo = await startEchoServer();
  stack = await startStack({
    admission: new AgentAdmission({
      verifier: new InstanceIdentityVerifier({ certificates: { 'eu-west-1': aws.certificatePem }, allowedAccounts: [ACCOUNT] }),
      lookupInstance: (id) => fleet.get(id),
      requireInstanceIdentity: true,
    }),
  });
  const doc = identityDocument({ instanceId: INSTANCE, accountId: ACCOUNT, region: 'eu-west-1', architecture: 'x86_64' });
  const signed = signedHeaders(doc, aws);
  imds = await startFakeImds(doc, signed.signature);
});

after(async () => {
  await stack.close();
  await echo.close();
  await imds.close();
});

async function connect(agentId: string, headers: Record<string, string>, platform = 'linux/amd64'): Promise<string> {
  const socket = tls.connect({ host: '127.0.0.1', port: stack.port, ca: fs.readFileSync(stack.caPath), servername: 'localhost', ALPNProtocols: ['http/1.1'] });
  await once(socket, 'secureConnect');
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.write(
    `GET ${AGENT_CONNECT_PATH} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: slipway-agent/1\r\n` +
      `Authorization: Bearer ${await stack.agentToken(agentId)}\r\nslipway-agent-id: ${agentId}\r\nslipway-agent-platform: ${platform}\r\n${extra}\r\n`,
  );
  let text = '';
  socket.setEncoding('utf8');
  socket.on('data', (c: string) => {
    text += c;
    if (text.includes('\r\n\r\n')) socket.destroy();
  });
  await once(socket, 'close');
  return text;
}

test('the real agent program fetches its identity from IMDSv2 and is admitted as the instance the fleet launched', async () => {
  const agent = await startAgentProcess(stack, {
    agentId: INSTANCE,
    platform: 'linux/amd64',
    upstream: `buildkitd:${echo.address}`,
    env: { SLIPWAY_AGENT_IDENTITY: 'imds', SLIPWAY_IMDS_URL: imds.url },
  });
  try {
    const link = stack.gateway.pool.get(INSTANCE);
    assert.ok(link, 'the agent is linked');
    assert.equal(link.instanceId, INSTANCE);
    const builder = await stack.table.getBuilder(INSTANCE, 'linux/amd64');
    assert.equal(builder?.instanceId, INSTANCE);
  } finally {
    await agent.stop();
  }
});

test('a forged document (edited after signing) is refused', async () => {
  const doc = identityDocument({ instanceId: INSTANCE, accountId: ACCOUNT, region: 'eu-west-1' });
  const signed = signedHeaders(doc, aws);
  const edited = Buffer.from(doc.toString('utf8').replace('c6id.xlarge', 'c6id.metal'));
  const answer = await connect(INSTANCE, { 'slipway-instance-document': edited.toString('base64'), 'slipway-instance-signature': signed.signature });
  assert.match(answer, /^HTTP\/1\.1 401 /);
  assert.match(answer, /signature/i);
});

test('a document signed by another key is refused', async () => {
  const signed = signedHeaders(identityDocument({ instanceId: INSTANCE, accountId: ACCOUNT, region: 'eu-west-1' }), forger);
  const answer = await connect(INSTANCE, { 'slipway-instance-document': signed.document, 'slipway-instance-signature': signed.signature });
  assert.match(answer, /^HTTP\/1\.1 401 /);
});

test('a genuine document for an instance the fleet did not launch is refused', async () => {
  const signed = signedHeaders(identityDocument({ instanceId: 'i-0999999999999999a', accountId: ACCOUNT, region: 'eu-west-1' }), aws);
  const answer = await connect('i-0999999999999999a', { 'slipway-instance-document': signed.document, 'slipway-instance-signature': signed.signature });
  assert.match(answer, /^HTTP\/1\.1 403 /);
  assert.match(answer, /i-0999999999999999a/);
});

test('an agent cannot register as another instance than its document proves', async () => {
  const signed = signedHeaders(identityDocument({ instanceId: INSTANCE, accountId: ACCOUNT, region: 'eu-west-1' }), aws);
  const answer = await connect('i-0eeeeffff00001111', { 'slipway-instance-document': signed.document, 'slipway-instance-signature': signed.signature }, 'linux/arm64');
  assert.match(answer, /^HTTP\/1\.1 403 /);
});

test('an arm64 claim on an x86_64 instance is refused', async () => {
  const signed = signedHeaders(identityDocument({ instanceId: INSTANCE, accountId: ACCOUNT, region: 'eu-west-1', architecture: 'x86_64' }), aws);
  const answer = await connect(INSTANCE, { 'slipway-instance-document': signed.document, 'slipway-instance-signature': signed.signature }, 'linux/arm64');
  assert.match(answer, /^HTTP\/1\.1 403 /);
});

test('without a document, where the fleet requires one, the agent is refused', async () => {
  const answer = await connect(INSTANCE, {});
  assert.match(answer, /^HTTP\/1\.1 401 /);
  assert.match(answer, /identity/i);
});

test('a join token past its expiry cannot be reused', async () => {
  const expired = await stack.issuer.issueAgentToken({ agentId: INSTANCE, fleet: 'test', ttlSec: 60, issuedAt: new Date(Date.now() - 3_600_000) });
  const signed = signedHeaders(identityDocument({ instanceId: INSTANCE, accountId: ACCOUNT, region: 'eu-west-1' }), aws);
  const socket = tls.connect({ host: '127.0.0.1', port: stack.port, ca: fs.readFileSync(stack.caPath), servername: 'localhost', ALPNProtocols: ['http/1.1'] });
  await once(socket, 'secureConnect');
  socket.write(
    `GET ${AGENT_CONNECT_PATH} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: slipway-agent/1\r\nAuthorization: Bearer ${expired}\r\n` +
      `slipway-agent-platform: linux/amd64\r\nslipway-instance-document: ${signed.document}\r\nslipway-instance-signature: ${signed.signature}\r\n\r\n`,
  );
  let text = '';
  socket.setEncoding('utf8');
  for await (const chunk of socket) text += chunk;
  assert.match(text, /^HTTP\/1\.1 401 /);
  assert.match(text, /expired/i);
});

test('a fleet join token (the same for every instance, as a launch template carries it) admits only instances of its fleet, each as its instance id', async () => {
  const fleetToken = await stack.issuer.issueAgentToken({ agentId: 'fleet:test', fleet: 'test', ttlSec: 600 });
  const withToken = async (headers: Record<string, string>, claimedId: string, platform = 'linux/amd64'): Promise<string> => {
    const socket = tls.connect({ host: '127.0.0.1', port: stack.port, ca: fs.readFileSync(stack.caPath), servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    await once(socket, 'secureConnect');
    const extra = Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    socket.write(
      `GET ${AGENT_CONNECT_PATH} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: slipway-agent/1\r\nAuthorization: Bearer ${fleetToken}\r\n` +
        `slipway-agent-id: ${claimedId}\r\nslipway-agent-platform: ${platform}\r\n${extra}\r\n`,
    );
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => {
      text += c;
      if (text.includes('\r\n\r\n')) socket.destroy();
    });
    await once(socket, 'close');
    return text;
  };
  const genuine = signedHeaders(identityDocument({ instanceId: INSTANCE, accountId: ACCOUNT, region: 'eu-west-1' }), aws);
  const admitted = await withToken({ 'slipway-instance-document': genuine.document, 'slipway-instance-signature': genuine.signature }, INSTANCE);
  assert.match(admitted, /^HTTP\/1\.1 101 /, 'admitted as the instance its document proves');
  const noDocument = await withToken({}, INSTANCE);
  assert.match(noDocument, /^HTTP\/1\.1 401 /);
  assert.match(noDocument, /fleet join token admits only an agent that proves its instance/);
  const unknown = signedHeaders(identityDocument({ instanceId: 'i-0999999999999999a', accountId: ACCOUNT, region: 'eu-west-1' }), aws);
  const notOurs = await withToken({ 'slipway-instance-document': unknown.document, 'slipway-instance-signature': unknown.signature }, 'i-0999999999999999a');
  assert.match(notOurs, /^HTTP\/1\.1 403 /);
  const claimsOther = await withToken({ 'slipway-instance-document': genuine.document, 'slipway-instance-signature': genuine.signature }, 'i-0eeeeffff00001111');
  assert.match(claimsOther, /^HTTP\/1\.1 403 /, 'it cannot claim another id than its instance');
});
