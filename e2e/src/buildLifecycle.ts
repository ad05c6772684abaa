import fs from 'node:fs';
import https from 'node:https';
import type { Platform } from '@slipway/proto';
import { HarnessError } from './harnessError.js';
import type { SlipwayStack } from './slipwayStack.js';

export interface ApiAnswer<T = Record<string, unknown>> {
  status: number;
  body: T;
}

/** One JSON request to a stack's gateway API over HTTPS/1.1, trusting the stack's CA. */
export function gatewayApi<T = Record<string, unknown>>(
  stack: Pick<SlipwayStack, 'gatewayUrl' | 'caPath'>,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  token: string | undefined,
  body?: unknown,
): Promise<ApiAnswer<T>> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL(path, stack.gatewayUrl),
      {
        method,
        ca: fs.readFileSync(stack.caPath),
        agent: false,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (text === '' && res.statusCode === 204) {
            resolve({ status: 204, body: {} as T });
            return;
          }
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as T });
          } catch {
            reject(new HarnessError('PROTOCOL', `${method} ${path}: expected JSON, got HTTP ${res.statusCode} '${text.slice(0, 200)}'`));
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

export interface AcquiredBuild {
  buildId: string;
  /** The build token: tunnel streams carrying it go to the acquired builder. */
  token: string;
  agentId: string;
}

/** Creates a build for the project and acquires a builder for the platform, waiting while it is pending. */
export async function acquireBuild(
  stack: Pick<SlipwayStack, 'gatewayUrl' | 'caPath' | 'clientToken'>,
  options: { project?: string; platform?: Platform; timeoutMs?: number } = {},
): Promise<AcquiredBuild> {
  const platform = options.platform ?? 'linux/amd64';
  const created = await gatewayApi<{ buildId: string; token: string }>(stack, 'POST', '/v1/builds', await stack.clientToken(options.project ?? 'demo'), {
    platforms: [platform],
  });
  if (created.status !== 201) throw new HarnessError('PROTOCOL', `creating a build answered ${created.status}: ${JSON.stringify(created.body)}`);
  const { buildId, token } = created.body;
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  for (;;) {
    const answer = await gatewayApi<{ state: string; builder?: { agentId: string }; retryAfterMs?: number }>(stack, 'POST', `/v1/builds/${buildId}/acquire`, token, { platform });
    if (answer.body.state === 'active') return { buildId, token, agentId: answer.body.builder!.agentId };
    if (answer.body.state !== 'pending' || Date.now() > deadline) {
      throw new HarnessError('PROTOCOL', `acquiring a ${platform} builder for build ${buildId}: ${answer.status} ${JSON.stringify(answer.body)}`);
    }
    await new Promise((r) => setTimeout(r, Math.min(answer.body.retryAfterMs ?? 100, 200)));
  }
}
