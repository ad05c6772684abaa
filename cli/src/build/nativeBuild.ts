import { randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import path from 'node:path';
import { Duplex } from 'node:stream';
import type { Platform } from '@slipway/proto';
import { CliError } from '../cliError.js';
import type { TunnelClient } from '../tunnelClient.js';
import type { TunnelStream } from '../tunnelStream.js';
import { methodCodec } from './buildkitProtos.js';
import type { BuildOptions } from './buildOptions.js';
import { frontendAttrsOf } from './buildOptions.js';
import { BuildFailure } from './buildFailure.js';
import { batchedWrites } from './batchedWrites.js';
import { ClientSession } from './clientSession.js';
import { ContextSource, contextSharedKey } from './contextSource.js';
import { GrpcClientCall } from './grpcClientCall.js';
import { GRPC_NOT_FOUND, GrpcStatusError } from './grpcStatusError.js';
import { exporterFor } from './outputExporter.js';
import { checkBuilderCan, probeBuilder } from './builderCapabilities.js';
import { PreflightBarrier } from './preflightBarrier.js';
import { dockerEndpointOf, pingDocker } from './dockerLoad.js';
import type { SolveProgress, StatusMessage } from './buildStatus.js';
import type { BuildConsole } from './buildConsole.js';
import { progressDisplay } from './progressDisplay.js';
import { SessionServer } from './sessionServer.js';
import { TunnelSocket } from './tunnelSocket.js';
import { serveRegistryAuth } from './registryAuthService.js';
import { serveSshForward } from './sshForward.js';
import { cacheRefusalOf, checkBuilderCache, solveCacheOf } from './cacheOptions.js';

// One `slipway build`: a solve per platform, in parallel, each on its own tunnel stream to a
// builder of that platform, each with its own session serving the context and receiving the output.

const MAX_BUFFERED_BYTES = 256 * 1024 * 1024;

interface SolveResponse {
  ExporterResponse: Record<string, string>;
}

export interface BuildResult {
  platform: Platform;
  exporterResponse: Record<string, string>;
  /** Where this platform's output went (a path, pushed names, the Docker loaded); undefined when nowhere. */
  delivered: string | undefined;
}

/** The user cancelled the build (Ctrl-C): the solves were cancelled on their builders. */
export class BuildCancelled extends Error {
  override readonly name = 'BuildCancelled';
}

export async function runNativeBuild(options: BuildOptions, client: TunnelClient, console: BuildConsole, signal?: AbortSignal): Promise<BuildResult[]> {
  const several = options.platforms.length > 1;
  if (options.output.type === 'docker' && 'load' in options.output) {
    // Before any builder works: a build whose image has nowhere to go is not started.
    const endpoint = dockerEndpointOf(options.output.load.dockerHost);
    if (typeof endpoint === 'string') throw new CliError('CONFIG_INVALID', endpoint);
    await pingDocker(endpoint).catch((err: Error) => {
      throw new CliError('CONFIG_INVALID', err.message, { cause: err });
    });
  }
  // No solve starts until every platform's builder has said it can make the output asked for.
  const preflight = new PreflightBarrier(options.platforms.length);
  const display = progressDisplay(options.progress, console, (text) => console.stderr(text));
  const solves = options.platforms.map((platform) =>
    solveOne(options, client, platform, several ? `${platform.replace('/', '_')}/` : '', display.solve(several ? `[${platform}] ` : ''), signal, preflight),
  );
  const settled = await Promise.allSettled(solves);
  display.finish();
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<BuildResult>).value);
}

async function solveOne(options: BuildOptions, client: TunnelClient, platform: Platform, outputSub: string, printer: SolveProgress, signal: AbortSignal | undefined, preflight: PreflightBarrier): Promise<BuildResult> {
  if (signal?.aborted) {
    const cancelled = new BuildCancelled('the build was cancelled');
    preflight.fail(cancelled);
    throw cancelled;
  }
  const tunnel = await client.open(platform).catch((err: unknown) => {
    preflight.fail(err);
    throw err;
  });
  let tunnelError: CliError | undefined;
  tunnel.once('remote-end', (error) => {
    tunnelError = error;
  });
  const bytes = tunnelBytes(tunnel);
  bytes.on('error', () => {
    // Reported through the tunnel's remote-end and the calls' statuses.
  });
  const connection = http2.connect('http://buildkit', { createConnection: () => new TunnelSocket(bytes, MAX_BUFFERED_BYTES), settings: { initialWindowSize: 4 * 1024 * 1024 } });
  connection.on('error', () => {
    // Each call reports the connection's end as its own.
  });
  let sessionTunnel: TunnelStream | undefined;
  const release = (): void => {
    // The tunnel first: its stream may be `bytes` itself, which destroy() would end without CANCEL.
    tunnel.cancel();
    connection.destroy();
    bytes.destroy();
    client.streamEnded();
    if (sessionTunnel) {
      sessionTunnel.cancel();
      client.streamEnded();
    }
  };
  let sessionError: Error | undefined;
  const server = new SessionServer((err) => (sessionError ??= err));
  const context = new ContextSource();
  context.add('context', options.contextDir);
  context.add('dockerfile', options.dockerfileDir);
  server.handle('/moby.filesync.v1.FileSync/DiffCopy', (call) => context.serve(call));
  const health = methodCodec<object, { status: number }>('grpc.health.v1.Health', 'Check');
  server.handle(health.path, async (call) => {
    for await (const _ of call.messages()) break;
    await call.send(health.encodeResponse({ status: 1 }));
  });
  // Pulls and pushes on the builder use the user's registry credentials, asked for through the session.
  if (options.registryCredentials) serveRegistryAuth(server, options.registryCredentials);
  const secrets = methodCodec<{ ID: string }, { data: Buffer }>('moby.buildkit.secrets.v1.Secrets', 'GetSecret');
  if (options.secrets.length > 0) {
    server.handle(secrets.path, async (call) => {
      let id = '';
      for await (const raw of call.messages()) id = secrets.decodeRequest(raw).ID;
      const secret = options.secrets.find((s) => s.id === id);
      // NotFound is what BuildKit expects for a secret the client does not have (required=false mounts go on without it).
      if (!secret) throw new GrpcStatusError(GRPC_NOT_FOUND, `secret ${id} not found`, secrets.path);
      await call.send(secrets.encodeResponse({ data: secret.data }));
    });
  }
  serveSshForward(server, options.ssh);
  let exporter;
  try {
    const capabilities = await probeBuilder(connection);
    checkBuilderCan(options.output, capabilities, platform);
    checkBuilderCache(options.cache, capabilities, platform);
    exporter = exporterFor(options.output, { platform, outputSub, capabilities }, server);
    preflight.pass();
    await preflight.all;
  } catch (caught) {
    // A builder that could not be asked is a lost tunnel, not a refusal.
    const err =
      caught instanceof GrpcStatusError
        ? new CliError(tunnelError?.code ?? 'TUNNEL_FAILED', `could not ask the ${platform} builder what it can export (ListWorkers): ${tunnelError?.message ?? caught.details}`, { cause: caught })
        : caught;
    preflight.fail(err);
    release();
    throw preflight.firstFailure(err);
  }

  const session = new ClientSession(server, `slipway build ${path.basename(options.contextDir)}`, contextSharedKey(options.contextDir));
  try {
    sessionTunnel = await openSessionTunnel(client, platform, session);
  } catch (err) {
    release();
    throw err;
  }
  // Ctrl-C while the session's stream was opening: no solve is started for nobody.
  if (signal?.aborted) {
    release();
    throw new BuildCancelled(`the build for ${platform} was cancelled`);
  }
  if (sessionTunnel) {
    sessionTunnel.once('remote-end', (error) => {
      // The session gone mid-build fails the solve: report the tunnel, not what BuildKit makes of it.
      if (error) tunnelError ??= error;
    });
    session.attach(new TunnelSocket(tunnelBytes(sessionTunnel), MAX_BUFFERED_BYTES));
  } else {
    session.start(connection).catch(() => {});
  }
  const ref = randomBytes(16).toString('hex');
  const statusCodec = methodCodec<{ Ref: string }, StatusMessage>('moby.buildkit.v1.Control', 'Status');
  const statusCall = new GrpcClientCall(connection, statusCodec);
  const statusDone = (async () => {
    await statusCall.write({ Ref: ref });
    statusCall.end();
    for await (const status of statusCall.messages()) printer.update(status);
  })();
  statusDone.catch(() => {});
  const solveCodec = methodCodec<object, SolveResponse>('moby.buildkit.v1.Control', 'Solve');
  // Cancelling the Solve call (RST_STREAM CANCEL) makes BuildKit cancel the solve: running
  // steps are killed on the builder rather than left to finish for nobody.
  const solveCall = new GrpcClientCall(connection, solveCodec);
  const onAbort = (): void => {
    solveCall.cancel();
    statusCall.cancel();
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const answer = await unaryOn(solveCall, {
      Ref: ref,
      Exporter: exporter.name,
      ExporterAttrs: exporter.attrs,
      Session: session.id,
      Frontend: 'dockerfile.v0',
      FrontendAttrs: frontendAttrsOf(options, platform),
      Cache: solveCacheOf(options.cache, platform, options.platforms),
      Entitlements: [],
    });
    // The last status messages may still be on their way: the Status stream ends after the solve.
    await statusDone.catch(() => {});
    return { platform, exporterResponse: answer.ExporterResponse, delivered: exporter.delivered() };
  } catch (err) {
    await statusDone.catch(() => {});
    if (signal?.aborted) throw new BuildCancelled(`the build for ${platform} was cancelled`, { cause: err });
    if (tunnelError) throw new CliError(tunnelError.code, `the tunnel to the ${platform} builder was lost during the build: ${tunnelError.message}`, { cause: err });
    if (err instanceof GrpcStatusError && err.connectionLost) {
      throw new CliError('TUNNEL_FAILED', `the tunnel to the ${platform} builder was lost during the build: ${err.details}`, { cause: err });
    }
    if (err instanceof GrpcStatusError) throw cacheRefusalOf(err, platform) ?? new BuildFailure(platform, err.details, printer.failedStep(), sessionError);
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    session.close();
    statusCall.cancel();
    release();
  }
}

/**
 * A tunnel stream that the agent attaches to dockerd's /session for this session, once the
 * agent has accepted it; undefined when the builder has no such endpoint (a buildkitd), and
 * the session then goes on Control.Session.
 */
async function openSessionTunnel(client: TunnelClient, platform: Platform, session: ClientSession): Promise<TunnelStream | undefined> {
  const tunnel = await client.open(platform, { session: session.attachment() });
  const refusal = await new Promise<CliError | undefined>((resolve) => {
    const onOpen = (): void => {
      tunnel.off('remote-end', onEnd);
      resolve(undefined);
    };
    const onEnd = (error: CliError | undefined): void => {
      tunnel.off('open', onOpen);
      resolve(error ?? new CliError('TUNNEL_FAILED', `the ${platform} builder ended the session's tunnel before accepting it`));
    };
    tunnel.once('open', onOpen);
    tunnel.once('remote-end', onEnd);
  });
  if (refusal === undefined) return tunnel;
  tunnel.cancel();
  client.streamEnded();
  if (refusal.code === 'UNSUPPORTED') return undefined;
  throw new CliError(refusal.code, `could not attach the build's session on the ${platform} builder: ${refusal.message}`, { cause: refusal });
}

/**
 * The tunnel as one byte stream for the connection to BuildKit. Both tunnel kinds are a single
 * Duplex with a writev (an HTTP/2 stream, a WebSocketByteStream): TunnelSocket's corked writes
 * then reach it as one batch, with no layer between to copy or re-split it.
 */
function tunnelBytes(tunnel: TunnelStream): Duplex {
  const { readable } = tunnel;
  if (readable instanceof Duplex && readable === (tunnel.writable as unknown)) return readable;
  return Duplex.from({ readable: tunnel.readable, writable: batchedWrites(tunnel.writable) });
}

async function unaryOn<Req, Res>(call: GrpcClientCall<Req, Res>, request: Req): Promise<Res> {
  await call.write(request);
  call.end();
  let answer: Res | undefined;
  for await (const message of call.messages()) answer = message;
  await call.done;
  if (answer === undefined) throw new GrpcStatusError(undefined, 'no answer message', 'Solve');
  return answer;
}
