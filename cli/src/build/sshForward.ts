import net from 'node:net';
import { once } from 'node:events';
import { methodCodec, type MethodCodec } from './buildkitProtos.js';
import { GRPC_NOT_FOUND, GRPC_UNAVAILABLE, GrpcStatusError } from './grpcStatusError.js';
import type { ServerCall, SessionServer } from './sessionServer.js';
import type { SshSource } from './sshSources.js';
import { answerAgentRequest, type SshKey } from './sshKeyAgent.js';

// The session's SSH agent forwarding (moby.sshforward.v1.SSH). Each ForwardAgent call is one
// connection a RUN --mount=type=ssh step made to its socket; it gets its own connection to the
// user's ssh-agent (or is answered by our own agent holding --ssh's key files). The bytes are not spliced blindly: the agent protocol is request/answer, so
// each request is read whole and only signing and listing keys are passed on (as buildx's
// read-only agent does); adding, removing, locking and extensions are answered with a failure,
// so a build cannot change the user's agent. One request at a time, each answer awaited before
// the next request is read, is the backpressure: neither side can run ahead of the other.

interface BytesMessage {
  data: Buffer;
}

const DEFAULT_ID = 'default';
const ID_METADATA = 'buildkit.ssh.id';
// OpenSSH's agent refuses messages above 256 KiB; so do we, before buffering them.
const MAX_AGENT_MESSAGE = 256 * 1024;
const SSH_AGENT_FAILURE = 5;
const SSH_AGENTC_REQUEST_IDENTITIES = 11;
const SSH_AGENTC_SIGN_REQUEST = 13;
const ALLOWED = new Set([SSH_AGENTC_REQUEST_IDENTITIES, SSH_AGENTC_SIGN_REQUEST]);

/** Whole ssh-agent messages (uint32 length, then that many bytes) from a byte stream cut anywhere. */
export class AgentMessageReader {
  private buffered: Buffer = Buffer.alloc(0);

  constructor(
    private readonly chunks: AsyncIterator<Buffer>,
    private readonly what: string,
  ) {}

  /** The next message with its length prefix, or undefined at a clean end between messages. */
  async next(): Promise<Buffer | undefined> {
    for (;;) {
      if (this.buffered.length >= 4) {
        const length = this.buffered.readUInt32BE(0);
        if (length === 0 || length > MAX_AGENT_MESSAGE) throw new Error(`${this.what} sent an ssh-agent message of ${length} bytes; expected 1 to ${MAX_AGENT_MESSAGE}`);
        if (this.buffered.length >= 4 + length) {
          const message = this.buffered.subarray(0, 4 + length);
          this.buffered = this.buffered.subarray(4 + length);
          return message;
        }
      }
      const chunk = await this.chunks.next();
      if (chunk.done) {
        if (this.buffered.length === 0) return undefined;
        throw new Error(`${this.what} ended in the middle of an ssh-agent message (${this.buffered.length} bytes of it)`);
      }
      this.buffered = this.buffered.length === 0 ? chunk.value : Buffer.concat([this.buffered, chunk.value]);
    }
  }
}

async function connectAgent(socket: string, id: string): Promise<net.Socket> {
  const connection = net.connect(socket);
  try {
    await once(connection, 'connect');
  } catch (err) {
    connection.destroy();
    throw new GrpcStatusError(GRPC_UNAVAILABLE, `cannot reach the ssh-agent for --ssh ${id} at ${socket}: ${(err as Error).message}`, 'ForwardAgent');
  }
  return connection;
}

async function writeAll(socket: net.Socket, bytes: Buffer): Promise<void> {
  if (!socket.write(bytes)) await once(socket, 'drain');
}

function requestsOf(call: ServerCall, codec: MethodCodec<BytesMessage, BytesMessage>): AgentMessageReader {
  const fromBuilder = (async function* () {
    for await (const raw of call.messages()) {
      const data = codec.decodeRequest(raw).data;
      if (data.length > 0) yield data;
    }
  })();
  return new AgentMessageReader(fromBuilder, 'the builder');
}

/** Key files: our own agent answers, one request at a time. */
async function answerWithKeys(call: ServerCall, keys: readonly SshKey[]): Promise<void> {
  const codec = methodCodec<BytesMessage, BytesMessage>('moby.sshforward.v1.SSH', 'ForwardAgent');
  const requests = requestsOf(call, codec);
  for (let request = await requests.next(); request !== undefined; request = await requests.next()) {
    await call.send(codec.encodeResponse({ data: answerAgentRequest(keys, request) }));
  }
}

async function forward(call: ServerCall, source: SshSource): Promise<void> {
  if (source.keys) return answerWithKeys(call, source.keys);
  const codec = methodCodec<BytesMessage, BytesMessage>('moby.sshforward.v1.SSH', 'ForwardAgent');
  const agent = await connectAgent(source.socket, source.id);
  agent.on('error', () => {
    // Seen by the reader below as the end of the agent's stream.
  });
  const requests = requestsOf(call, codec);
  const answers = new AgentMessageReader(agent[Symbol.asyncIterator]() as AsyncIterator<Buffer>, `the ssh-agent at ${source.socket}`);
  try {
    for (let request = await requests.next(); request !== undefined; request = await requests.next()) {
      if (!ALLOWED.has(request[4]!)) {
        await call.send(codec.encodeResponse({ data: Buffer.from([0, 0, 0, 1, SSH_AGENT_FAILURE]) }));
        continue;
      }
      await writeAll(agent, request);
      const answer = await answers.next();
      if (answer === undefined) throw new Error(`the ssh-agent at ${source.socket} closed the connection without answering`);
      await call.send(codec.encodeResponse({ data: answer }));
    }
  } finally {
    agent.destroy();
  }
}

/** Serves --ssh's agents to the builder on this session. */
export function serveSshForward(server: SessionServer, sources: readonly SshSource[]): void {
  if (sources.length === 0) return;
  const check = methodCodec<{ ID: string }, object>('moby.sshforward.v1.SSH', 'CheckAgent');
  const byId = (id: string): SshSource => {
    const source = sources.find((s) => s.id === (id || DEFAULT_ID));
    // NotFound lets BuildKit skip an optional (required=false) ssh mount.
    if (!source) throw new GrpcStatusError(GRPC_NOT_FOUND, `unset ssh forward key ${id || DEFAULT_ID} (slipway build --ssh forwards ${sources.map((s) => s.id).join(', ')})`, check.path);
    return source;
  };
  server.handle(check.path, async (call) => {
    let id = '';
    for await (const raw of call.messages()) id = check.decodeRequest(raw).ID;
    byId(id);
    await call.send(check.encodeResponse({}));
  });
  const forwardPath = methodCodec<BytesMessage, BytesMessage>('moby.sshforward.v1.SSH', 'ForwardAgent').path;
  server.handle(forwardPath, (call) => forward(call, byId(call.metadata(ID_METADATA)[0] ?? '')));
}
