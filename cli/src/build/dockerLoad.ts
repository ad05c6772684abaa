import http from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

// `--load`: the docker exporter's tarball, streamed as it arrives from the builder into the
// local Docker Engine's `POST /images/load` (as `docker load` does). Nothing is held in memory
// or on disk: the request body is fed from the session stream with backpressure both ways.

export type DockerEndpoint = { socketPath: string; text: string } | { host: string; port: number; text: string };

const LOAD_RESPONSE_LIMIT = 1024 * 1024;
const PING_TIMEOUT_MS = 10_000;

/** unix:///path or tcp://host:port (plain HTTP, as the docker CLI without TLS settings). */
export function dockerEndpointOf(dockerHost: string): DockerEndpoint | string {
  if (dockerHost.startsWith('unix://')) {
    const socketPath = dockerHost.slice('unix://'.length);
    return socketPath === '' ? `DOCKER_HOST ${dockerHost} names no socket` : { socketPath, text: dockerHost };
  }
  if (dockerHost.startsWith('tcp://')) {
    try {
      const url = new URL(dockerHost.replace(/^tcp:/, 'http:'));
      return { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 2375), text: dockerHost };
    } catch {
      return `DOCKER_HOST ${dockerHost} is not tcp://HOST:PORT`;
    }
  }
  return `--load reaches Docker through unix:// or tcp:// (DOCKER_HOST); got '${dockerHost}'`;
}

function requestOptions(endpoint: DockerEndpoint): http.RequestOptions {
  return 'socketPath' in endpoint ? { socketPath: endpoint.socketPath } : { host: endpoint.host, port: endpoint.port };
}

async function readBody(res: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    // The answer is a few progress lines; more than this is kept from its start only.
    if (size < LOAD_RESPONSE_LIMIT) chunks.push(chunk);
    size += chunk.length;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Fails, naming the endpoint, when no Docker Engine answers there: checked before the build. */
export async function pingDocker(endpoint: DockerEndpoint): Promise<void> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), PING_TIMEOUT_MS);
  try {
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ ...requestOptions(endpoint), method: 'GET', path: '/_ping', signal: controller.signal }, (res) => {
        res.resume();
        res.on('error', reject);
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });
    if (status !== 200) throw new Error(`GET /_ping answered ${status}`);
  } catch (err) {
    throw new Error(`--load needs a Docker Engine at ${endpoint.text}, but none answered: ${(err as Error).message}`, { cause: err });
  } finally {
    clearTimeout(timer);
  }
}

/** Streams a `docker save`-format tarball into the engine; resolves to the names it loaded. */
export async function loadIntoDocker(endpoint: DockerEndpoint, tarball: AsyncIterable<Buffer>): Promise<string[]> {
  const req = http.request({ ...requestOptions(endpoint), method: 'POST', path: '/images/load?quiet=1', headers: { 'content-type': 'application/x-tar' } });
  const answered = new Promise<http.IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
  answered.catch(() => {});
  try {
    await pipeline(Readable.from(tarball), req);
  } catch (err) {
    req.destroy();
    throw new Error(`loading the image into Docker at ${endpoint.text} failed: ${(err as Error).message}`, { cause: err });
  }
  const res = await answered.catch((err: Error) => {
    throw new Error(`loading the image into Docker at ${endpoint.text} failed: ${err.message}`, { cause: err });
  });
  const body = await readBody(res);
  if (res.statusCode !== 200) throw new Error(`Docker at ${endpoint.text} refused the image: ${res.statusCode} ${body.trim()}`);
  const loaded: string[] = [];
  for (const line of body.split('\n')) {
    if (line.trim() === '') continue;
    let message: { stream?: string; error?: string; errorDetail?: { message?: string } };
    try {
      message = JSON.parse(line) as typeof message;
    } catch {
      continue;
    }
    if (message.error !== undefined) throw new Error(`Docker at ${endpoint.text} failed to load the image: ${message.errorDetail?.message ?? message.error}`);
    const match = /Loaded image(?: ID)?: (.+)/.exec(message.stream ?? '');
    if (match) loaded.push(match[1]!.trim());
  }
  return loaded;
}
