import tls from 'node:tls';
import {
  AGENT_CONNECT_PATH,
  AGENT_UPGRADE_PROTOCOL,
  Header,
  readBoundedBody,
  readHttpResponseHead,
} from '@slipway/proto';
import { AgentError } from './agentError.js';
import { instanceIdentityHeaders, type InstanceIdentity } from './instanceIdentity.js';

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
}

const MAX_HEAD_BYTES = 16 * 1024;
// Ids end up in logs and in what the agent reports; anything else is not a name a gateway gave.
const GATEWAY_ID_PATTERN = /^[\x21-\x7e]{1,256}$/;

// Opens one agent link: TLS to the gateway's public port, then an HTTP/1.1 Upgrade to
// slipway-agent/1.
export async function dialGateway(options: GatewayDialOptions): Promise<DialedGateway> {
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
    // Both identity values are base64 (instanceIdentityHeaders refuses anything else), so neither
    // can break the request head.
    const identityLines = options.instanceIdentity
      ? Object.entries(instanceIdentityHeaders(options.instanceIdentity)).map(([name, value]) => `${name}: ${value}\r\n`).join('')
      : '';
    socket.write(
      `GET ${AGENT_CONNECT_PATH} HTTP/1.1\r\nHost: ${gatewayUrl.host}\r\nConnection: Upgrade\r\nUpgrade: ${AGENT_UPGRADE_PROTOCOL}\r\n` +
        `Authorization: Bearer ${options.token}\r\n${Header.agentId}: ${options.agentId}\r\n` +
        `${Header.agentPlatform}: ${options.platform}\r\n${Header.agentVersion}: ${options.version}\r\n${identityLines}\r\n`,
    );
    const head = await readHttpResponseHead(socket, MAX_HEAD_BYTES, options.signal).catch((err: Error) => {
      throw err instanceof AgentError ? err : new AgentError('GATEWAY_PROTOCOL', `gateway ${where} answered the upgrade badly: ${err.message}`, { cause: err });
    });
    if (head.statusCode !== 101) {
      const body = await readBoundedBody(socket, head, 4096, 2_000);
      socket.destroy();
      let detail = body.trim().slice(0, 500);
      try {
        const parsed = JSON.parse(body) as { error?: { code?: string; message?: string } };
        if (parsed.error?.message) detail = `${parsed.error.code ?? ''} ${parsed.error.message}`.trim();
      } catch {
        // Not JSON: the raw text is the best explanation there is.
      }
      const code = head.statusCode === 401 || head.statusCode === 403 ? 'UNAUTHENTICATED' : 'GATEWAY_PROTOCOL';
      throw new AgentError(code, `gateway ${where} refused the agent connection: '${head.statusLine}'${detail ? `: ${detail}` : ''}`);
    }
    if ((head.headers.get('upgrade') ?? '').toLowerCase() !== AGENT_UPGRADE_PROTOCOL) {
      socket.destroy();
      throw new AgentError('GATEWAY_PROTOCOL', `gateway ${where} upgraded to '${head.headers.get('upgrade')}'; expected ${AGENT_UPGRADE_PROTOCOL}`);
    }
    const gatewayId = head.headers.get(Header.gatewayId);
    if (gatewayId !== undefined && !GATEWAY_ID_PATTERN.test(gatewayId)) {
      socket.destroy();
      throw new AgentError('GATEWAY_PROTOCOL', `gateway ${where} named itself '${gatewayId.slice(0, 64)}' in ${Header.gatewayId}; expected 1-256 visible ASCII characters`);
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    return { socket, gatewayId };
  } catch (err) {
    socket.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
    options.signal.removeEventListener('abort', onAbort);
  }
}
