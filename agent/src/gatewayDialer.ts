import tls from 'node:tls';
import {
  AGENT_CONNECT_PATH,
  AGENT_UPGRADE_PROTOCOL,
  Header,
  readBoundedBody,
  readHttpResponseHead,
  type HttpResponseHead,
} from '@slipway/proto';
import { AgentError } from './agentError.js';
import { instanceIdentityHeaders, type InstanceIdentity } from './instanceIdentity.js';
import type { SlabReader } from './slabReader.js';

export interface GatewayDialOptions {
  gatewayUrl: URL;
  token: string;
  agentId: string;
  platform: string;
  version: string;
  ca: Buffer | undefined;
  connectTimeoutMs: number;
  /** Sent with every connect request when the agent proves its EC2 instance (--identity imds). */
  instanceIdentity?: Pick<InstanceIdentity, 'document' | 'signature'> | undefined;
  signal: AbortSignal;
}

export interface DialedGateway {
  /** Positioned at the first HTTP/2 byte. */
  socket: tls.TLSSocket;
  /** The replica that answered, from its 101; undefined if it did not name itself. */
  gatewayId: string | undefined;
  /** The key lanes to that replica are opened with; undefined from a gateway without lanes. */
  laneKey: string | undefined;
}

const MAX_HEAD_BYTES = 16 * 1024;
// Ids end up in logs and in what the agent reports; anything else is not a name a gateway gave.
const GATEWAY_ID_PATTERN = /^[\x21-\x7e]{1,256}$/;
const LANE_KEY_PATTERN = /^[A-Za-z0-9_-]{16,128}$/;

// Opens one agent link: TLS to the gateway's public port, then an HTTP/1.1 Upgrade to
// slipway-agent/1.
export async function dialGateway(options: GatewayDialOptions): Promise<DialedGateway> {
  // Both identity values are base64 (instanceIdentityHeaders refuses anything else), so neither
  // can break the request head.
  const identity = options.instanceIdentity ? instanceIdentityHeaders(options.instanceIdentity) : {};
  const { socket, head, where } = await dialUpgrade(
    { gatewayUrl: options.gatewayUrl, ca: options.ca, connectTimeoutMs: options.connectTimeoutMs, signal: options.signal },
    AGENT_CONNECT_PATH,
    AGENT_UPGRADE_PROTOCOL,
    {
      Authorization: `Bearer ${options.token}`,
      [Header.agentId]: options.agentId,
      [Header.agentPlatform]: options.platform,
      [Header.agentVersion]: options.version,
      ...identity,
    },
  );
  const gatewayId = head.headers.get(Header.gatewayId);
  if (gatewayId !== undefined && !GATEWAY_ID_PATTERN.test(gatewayId)) {
    socket.destroy();
    throw new AgentError('GATEWAY_PROTOCOL', `gateway ${where} named itself '${gatewayId.slice(0, 64)}' in ${Header.gatewayId}; expected 1-256 visible ASCII characters`);
  }
  const laneKey = head.headers.get(Header.laneKey);
  if (laneKey !== undefined && !LANE_KEY_PATTERN.test(laneKey)) {
    socket.destroy();
    throw new AgentError('GATEWAY_PROTOCOL', `gateway ${where} gave a lane key that is not 16-128 base64url characters`);
  }
  socket.setKeepAlive(true, 10_000);
  return { socket, gatewayId, laneKey };
}

export interface UpgradeDialOptions {
  gatewayUrl: URL;
  ca: Buffer | undefined;
  connectTimeoutMs: number;
  signal: AbortSignal;
  /** A TLS session of an earlier connection to the same gateway, to resume. */
  session?: Buffer | undefined;
  /** Reads the connection through onread (SlabReader) instead of as a stream; bytes after the 101 wait in it. */
  reader?: SlabReader | undefined;
}

// TLS to the gateway's public port, then an HTTP/1.1 Upgrade; resolves once the 101 has arrived,
// with the socket at the first byte after it.
export async function dialUpgrade(
  options: UpgradeDialOptions,
  path: string,
  protocol: string,
  headers: Record<string, string>,
): Promise<{ socket: tls.TLSSocket; head: HttpResponseHead; where: string }> {
  const { gatewayUrl } = options;
  const host = gatewayUrl.hostname.replace(/^\[|\]$/g, '');
  const port = Number(gatewayUrl.port || 443);
  const where = `${host}:${port}`;
  const socket = tls.connect({
    host,
    port,
    servername: /^[\d.]+$|:/.test(host) ? undefined : host,
    ca: options.ca,
    ALPNProtocols: ['http/1.1'],
    ...(options.session ? { session: options.session } : {}),
    ...(options.reader ? { onread: options.reader.onread } : {}),
  });
  socket.on('error', () => {});
  const timer = setTimeout(
    () => socket.destroy(new AgentError('GATEWAY_UNREACHABLE', `no answer from gateway ${where} within ${options.connectTimeoutMs} ms`)),
    options.connectTimeoutMs,
  );
  const onAbort = (): void => {
    socket.destroy(new AgentError('GATEWAY_UNREACHABLE', 'dial aborted'));
  };
  options.signal.addEventListener('abort', onAbort, { once: true });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', (err) =>
        reject(err instanceof AgentError ? err : new AgentError('GATEWAY_UNREACHABLE', `cannot reach gateway ${where}: ${err.message}`, { cause: err })),
      );
    });
    const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${gatewayUrl.host}\r\nConnection: Upgrade\r\nUpgrade: ${protocol}\r\n${lines}\r\n`);
    const { reader } = options;
    const head = await (reader ? reader.readHead(socket, MAX_HEAD_BYTES, options.signal) : readHttpResponseHead(socket, MAX_HEAD_BYTES, options.signal)).catch(
      (err: Error) => {
        throw err instanceof AgentError ? err : new AgentError('GATEWAY_PROTOCOL', `gateway ${where} answered the upgrade badly: ${err.message}`, { cause: err });
      },
    );
    if (head.statusCode !== 101) {
      const body = await (reader ? reader.readText(socket, 4096, 2_000) : readBoundedBody(socket, head, 4096, 2_000));
      socket.destroy();
      let detail = body.trim().slice(0, 500);
      try {
        const parsed = JSON.parse(body) as { error?: { code?: string; message?: string } };
        if (parsed.error?.message) detail = `${parsed.error.code ?? ''} ${parsed.error.message}`.trim();
      } catch {
        // Not JSON: the raw text is the best explanation there is.
      }
      const code = head.statusCode === 401 || head.statusCode === 403 ? 'UNAUTHENTICATED' : 'GATEWAY_PROTOCOL';
      throw new AgentError(code, `gateway ${where} refused the ${protocol} upgrade: '${head.statusLine}'${detail ? `: ${detail}` : ''}`);
    }
    if ((head.headers.get('upgrade') ?? '').toLowerCase() !== protocol) {
      socket.destroy();
      throw new AgentError('GATEWAY_PROTOCOL', `gateway ${where} upgraded to '${head.headers.get('upgrade')}'; expected ${protocol}`);
    }
    socket.setNoDelay(true);
    return { socket, head, where };
  } catch (err) {
    socket.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
    options.signal.removeEventListener('abort', onAbort);
  }
}
