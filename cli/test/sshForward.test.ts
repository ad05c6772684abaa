// The session's SSH agent forwarding against a real ssh-agent (OpenSSH's) holding a generated
// key, called as BuildKit calls it: over HTTP/2 on a socket, ForwardAgent with the ID in metadata.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { methodCodec } from '../src/build/buildkitProtos.js';
import { GrpcClientCall } from '../src/build/grpcClientCall.js';
import { GrpcStatusError } from '../src/build/grpcStatusError.js';
import { SessionServer } from '../src/build/sessionServer.js';
import { serveSshForward } from '../src/build/sshForward.js';
import { answerAgentRequest, sshKeyOf } from '../src/build/sshKeyAgent.js';
import { createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';

const KEY_COMMENT = 'slipway-forwarded-test-key';
let dir: string;
let agent: ChildProcess;
let agentSocket: string;
let sessionSocket: net.Server;
let client: http2.ClientHttp2Session;
let server: SessionServer;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'slipway-ssh-'));
  agentSocket = path.join(dir, 'agent.sock');
  agent = spawn('/usr/bin/ssh-agent', ['-D', '-a', agentSocket], { stdio: 'ignore' });
  for (let i = 0; i < 200 && !existsSync(agentSocket); i++) await sleep(25);
  execFileSync('/usr/bin/ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', KEY_COMMENT, '-f', path.join(dir, 'id_ed25519')]);
  execFileSync('/usr/bin/ssh-add', [path.join(dir, 'id_ed25519')], { env: { SSH_AUTH_SOCK: agentSocket }, stdio: 'ignore' });
  server = new SessionServer(() => {});
  serveSshForward(server, [{ id: 'default', socket: agentSocket }, { id: 'broken', socket: path.join(dir, 'no-agent.sock') }]);
  const sessionPath = path.join(dir, 'session.sock');
  sessionSocket = net.createServer((socket) => server.serve(socket)).listen(sessionPath);
  await once(sessionSocket, 'listening');
  client = http2.connect('http://session', { createConnection: () => net.connect(sessionPath) });
  client.on('error', () => {});
});

after(async () => {
  client?.destroy();
  server?.close();
  sessionSocket?.close();
  agent?.kill();
  await rm(dir, { recursive: true, force: true });
});

const forwardCodec = methodCodec<{ data: Buffer }, { data: Buffer }>('moby.sshforward.v1.SSH', 'ForwardAgent');
const checkCodec = methodCodec<{ ID: string }, object>('moby.sshforward.v1.SSH', 'CheckAgent');

function agentMessage(type: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length + 1, 0);
  head[4] = type;
  return Buffer.concat([head, body]);
}

function sshString(b: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length, 0);
  return Buffer.concat([len, b]);
}

/** Reads whole agent answers off a ForwardAgent call, however the bytes were cut. */
async function* answers(call: GrpcClientCall<{ data: Buffer }, { data: Buffer }>): AsyncGenerator<Buffer> {
  let buffered = Buffer.alloc(0);
  for await (const m of call.messages()) {
    buffered = Buffer.concat([buffered, m.data]);
    while (buffered.length >= 4 && buffered.length >= 4 + buffered.readUInt32BE(0)) {
      const length = buffered.readUInt32BE(0);
      yield buffered.subarray(4, 4 + length);
      buffered = buffered.subarray(4 + length);
    }
  }
}

test('ForwardAgent lists the real agent\'s key and gets a signature from it; requests cut anywhere are put back together', async () => {
  const call = new GrpcClientCall(client, forwardCodec, { 'buildkit.ssh.id': 'default' });
  const replies = answers(call)[Symbol.asyncIterator]();
  const list = agentMessage(11);
  await call.write({ data: list.subarray(0, 3) });
  await call.write({ data: list.subarray(3) });
  const identities = (await replies.next()).value as Buffer;
  assert.equal(identities[0], 12, 'SSH_AGENT_IDENTITIES_ANSWER');
  assert.equal(identities.readUInt32BE(1), 1, 'one key');
  assert.ok(identities.includes(Buffer.from(KEY_COMMENT)), 'the key\'s comment arrives');
  const blobLength = identities.readUInt32BE(5);
  const blob = identities.subarray(9, 9 + blobLength);
  const flags = Buffer.alloc(4);
  await call.write({ data: agentMessage(13, Buffer.concat([sshString(blob), sshString(Buffer.from('data to sign')), flags])) });
  const signed = (await replies.next()).value as Buffer;
  assert.equal(signed[0], 14, 'SSH_AGENT_SIGN_RESPONSE');
  assert.ok(signed.includes(Buffer.from('ssh-ed25519')));
  call.end();
  assert.equal((await replies.next()).done, true);
  await call.done;
});

test('the builder cannot change the user\'s agent: remove-all and add are answered with a failure and not passed on', async () => {
  const call = new GrpcClientCall(client, forwardCodec, { 'buildkit.ssh.id': 'default' });
  const replies = answers(call)[Symbol.asyncIterator]();
  await call.write({ data: Buffer.concat([agentMessage(19), agentMessage(17, Buffer.from('junk')), agentMessage(11)]) });
  assert.equal(((await replies.next()).value as Buffer)[0], 5, 'SSH_AGENT_FAILURE for remove-all');
  assert.equal(((await replies.next()).value as Buffer)[0], 5, 'SSH_AGENT_FAILURE for add');
  const identities = (await replies.next()).value as Buffer;
  assert.equal(identities.readUInt32BE(1), 1, 'the key is still there');
  call.end();
  await call.done;
  assert.match(execFileSync('/usr/bin/ssh-add', ['-l'], { env: { SSH_AUTH_SOCK: agentSocket } }).toString(), new RegExp(KEY_COMMENT));
});

test('CheckAgent: a forwarded ID is there, any other is NotFound (so optional ssh mounts go on without it); an agent that is gone is reported', async () => {
  await GrpcClientCall.unary(client, checkCodec, { ID: '' });
  await GrpcClientCall.unary(client, checkCodec, { ID: 'default' });
  await assert.rejects(GrpcClientCall.unary(client, checkCodec, { ID: 'other' }), (err: GrpcStatusError) => err.code === 5 && /unset ssh forward key other/.test(err.details));
  const call = new GrpcClientCall(client, forwardCodec, { 'buildkit.ssh.id': 'broken' });
  await call.write({ data: agentMessage(11) }).catch(() => {});
  call.end();
  await assert.rejects(call.done, (err: GrpcStatusError) => err.code === 14 && /cannot reach the ssh-agent for --ssh broken/.test(err.details));
});

/** One request to a unix-socket agent, its whole answer back. */
async function askAgent(socket: string, request: Buffer): Promise<Buffer> {
  const connection = net.connect(socket);
  connection.on('error', () => {});
  await once(connection, 'connect');
  connection.write(request);
  let answer = Buffer.alloc(0);
  for await (const chunk of connection) {
    answer = Buffer.concat([answer, chunk as Buffer]);
    if (answer.length >= 4 && answer.length >= 4 + answer.readUInt32BE(0)) break;
  }
  connection.destroy();
  return answer;
}

test('key files (--ssh ID=KEYFILE): our agent lists them as OpenSSH\'s agent does and signs as it does, Ed25519, RSA and ECDSA', async () => {
  const keysDir = await mkdtemp(path.join(dir, 'keys-'));
  for (const [name, args] of [['ed', ['-t', 'ed25519']], ['rsa', ['-t', 'rsa', '-b', '2048']], ['ec', ['-t', 'ecdsa', '-b', '384']], ['pem', ['-t', 'rsa', '-b', '2048', '-m', 'PEM']]] as const) {
    execFileSync('/usr/bin/ssh-keygen', ['-q', ...args, '-N', '', '-C', `comment-${name}`, '-f', path.join(keysDir, name)]);
  }
  const data = Buffer.from('session data to sign');
  for (const name of ['ed', 'rsa', 'ec', 'pem']) {
    const file = path.join(keysDir, name);
    const key = sshKeyOf(readFileSync(file, 'utf8'), file);
    // A private OpenSSH agent holding only this key answers the same requests.
    const socket = path.join(keysDir, `${name}.sock`);
    const real = spawn('/usr/bin/ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 200 && !existsSync(socket); i++) await sleep(25);
      execFileSync('/usr/bin/ssh-add', [file], { env: { SSH_AUTH_SOCK: socket }, stdio: 'ignore' });
      const list = agentMessage(11);
      const ours = answerAgentRequest([key], list);
      const theirs = await askAgent(socket, list);
      // PEM keys carry no comment: OpenSSH names them by file, as we do.
      assert.deepEqual(ours, theirs, `${name}: the identities answer, byte for byte`);
      for (const flags of name === 'ed' || name === 'ec' ? [0] : [0, 2, 4]) {
        const flagBytes = Buffer.alloc(4);
        flagBytes.writeUInt32BE(flags, 0);
        const request = agentMessage(13, Buffer.concat([sshString(key.publicBlob), sshString(data), flagBytes]));
        const ourSig = answerAgentRequest([key], request);
        const theirSig = await askAgent(socket, request);
        assert.equal(ourSig[4], 14, `${name} signs`);
        if (name !== 'ec') assert.deepEqual(ourSig, theirSig, `${name} flags ${flags}: deterministic signatures match OpenSSH's`);
        else {
          // ECDSA signatures are random: ours must verify with the public key.
          const blob = ourSig.subarray(9);
          const algLength = blob.readUInt32BE(0);
          assert.equal(blob.subarray(4, 4 + algLength).toString(), 'ecdsa-sha2-nistp384');
          const rs = blob.subarray(8 + algLength);
          const r = rs.subarray(4, 4 + rs.readUInt32BE(0));
          const sPart = rs.subarray(4 + r.length);
          const s = sPart.subarray(4, 4 + sPart.readUInt32BE(0));
          const der = (n: Buffer) => Buffer.concat([Buffer.from([2, n.length]), n]);
          const seq = Buffer.concat([der(r), der(s)]);
          assert.ok(verify('sha384', data, createPublicKey(key.private), Buffer.concat([Buffer.from([0x30, seq.length]), seq])), 'the ECDSA signature verifies');
          assert.equal(theirSig[4], 14);
        }
      }
      assert.equal(answerAgentRequest([key], agentMessage(19))[4], 5, 'remove-all: failure');
    } finally {
      real.kill();
    }
  }
  assert.throws(() => {
    execFileSync('/usr/bin/ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'secret-passphrase', '-f', path.join(keysDir, 'locked')]);
    sshKeyOf(readFileSync(path.join(keysDir, 'locked'), 'utf8'), 'locked');
  }, /locked is protected by a passphrase/);
});
