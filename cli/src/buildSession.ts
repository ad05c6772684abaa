import type { Logger, Platform } from '@slipway/proto';
import { CliError, toCliError } from './cliError.js';
import { callGatewayApi, type ApiCarrier } from './gatewayApi.js';

export interface BuildSessionOptions {
  api: ApiCarrier;
  /** The project token (asked for each time: it may be short-lived); it creates builds, everything after uses the build token. */
  projectToken: () => Promise<string>;
  log: Logger;
  /** Give up on a builder that is not free within this long. */
  acquireTimeoutMs: number;
  /** Finish the build this long after its last stream closed (0: only on close()). */
  idleReleaseMs: number;
  requestTimeoutMs: number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

interface CreatedBuild {
  buildId: string;
  token: string;
  heartbeatIntervalMs: number;
}

type AcquireAnswer =
  | { state: 'active'; builder: { agentId: string }; warm: boolean; waitedMs: number }
  | { state: 'pending'; reason: string; message: string; retryAfterMs: number }
  | { state: string; error: { code: string; message: string } };

interface HeartbeatAnswer {
  allocations: Array<{ platform: string; state: string; reason?: string }>;
  token?: string;
}

function defaultSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

// The CLI's side of the build lifecycle: tunnel streams need a build token and a builder
// acquired for their platform. The first stream creates the build and acquires; later streams
// reuse it; heartbeats keep it while streams are open; it is finished once it has been idle for
// a while (a buildx session opens many short connections) or when the CLI exits.
export class BuildSession {
  private build: Promise<CreatedBuild> | undefined;
  private readonly acquired = new Map<Platform, Promise<void>>();
  /** The builder (agent id) acquired for each platform of the current build. */
  readonly builders = new Map<Platform, string>();
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private openStreams = 0;
  private readonly stop = new AbortController();
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;

  constructor(private readonly options: BuildSessionOptions) {
    this.sleep = options.sleep ?? defaultSleep;
  }

  /** The build id, once a build exists. */
  async currentBuildId(): Promise<string | undefined> {
    return this.build ? (await this.build.catch(() => undefined))?.buildId : undefined;
  }

  /** A build token whose build has a builder for this platform. */
  async tokenFor(platform: Platform): Promise<string> {
    if (this.stop.signal.aborted) throw new CliError('INTERNAL', 'the build session is closed');
    const build = await this.ensureBuild();
    let acquiring = this.acquired.get(platform);
    if (!acquiring) {
      acquiring = this.acquire(build, platform);
      this.acquired.set(platform, acquiring);
      acquiring.catch(() => {
        if (this.acquired.get(platform) === acquiring) this.acquired.delete(platform);
      });
    }
    await acquiring;
    return (await this.ensureBuild()).token;
  }

  streamOpened(): void {
    this.openStreams++;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  streamClosed(): void {
    this.openStreams--;
    if (this.openStreams > 0 || this.options.idleReleaseMs <= 0 || this.build === undefined) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.openStreams === 0) void this.release('finish', 'idle');
    }, this.options.idleReleaseMs);
    this.idleTimer.unref();
  }

  /**
   * The build lost its builder (or ended) under a stream: give it up, so the next stream starts
   * a fresh build rather than failing the same way. It is cancelled at the gateway too, so that it
   * does not hold a builder slot until its heartbeats are missed.
   */
  invalidate(): void {
    void this.release('cancel', 'its builder was lost under a stream');
  }

  /** Finishes (or cancels) the build and stops heartbeating. Idempotent. */
  async close(how: 'finish' | 'cancel' = 'finish'): Promise<void> {
    this.stop.abort();
    clearTimeout(this.idleTimer);
    await this.release(how, 'the CLI is exiting');
  }

  private ensureBuild(): Promise<CreatedBuild> {
    if (!this.build) {
      const creating = this.options.projectToken().then((projectToken) =>
        callGatewayApi<CreatedBuild>(this.options.api, {
          method: 'POST',
          path: '/v1/builds',
          token: projectToken,
          // Platforms are acquired one by one as streams ask; the list is informative.
          body: { platforms: ['linux/amd64', 'linux/arm64'] },
          timeoutMs: this.options.requestTimeoutMs,
        }),
      );
      this.build = creating;
      creating.then(
        (b) => {
          this.options.log.info('build created', { buildId: b.buildId });
          this.startHeartbeat(b);
        },
        () => {
          if (this.build === creating) this.build = undefined;
        },
      );
    }
    return this.build;
  }

  private async acquire(build: CreatedBuild, platform: Platform): Promise<void> {
    const deadline = Date.now() + this.options.acquireTimeoutMs;
    let lastReason = '';
    for (;;) {
      const answer = await callGatewayApi<AcquireAnswer>(this.options.api, {
        method: 'POST',
        path: `/v1/builds/${build.buildId}/acquire`,
        token: build.token,
        body: { platform },
        timeoutMs: this.options.requestTimeoutMs,
      });
      if (answer.state === 'active') {
        const a = answer as Extract<AcquireAnswer, { state: 'active' }>;
        this.builders.set(platform, a.builder.agentId);
        this.options.log.info('builder acquired', { buildId: build.buildId, platform, builder: a.builder.agentId, warm: a.warm, waitedMs: a.waitedMs });
        return;
      }
      if (answer.state !== 'pending') {
        const e = (answer as { error: { code: string; message: string } }).error;
        this.forget();
        throw new CliError(e.code === 'AGENT_LOST' ? 'AGENT_LOST' : 'BUILD_ENDED', `build ${build.buildId} (${platform}): ${e.message}`);
      }
      const pending = answer as Extract<AcquireAnswer, { state: 'pending' }>;
      if (pending.reason !== lastReason) {
        lastReason = pending.reason;
        this.options.log.info('waiting for a builder', { platform, reason: pending.message });
      }
      if (Date.now() + pending.retryAfterMs > deadline) {
        await this.release('cancel', `no ${platform} builder within ${this.options.acquireTimeoutMs} ms`);
        throw new CliError('NO_AGENT', `no ${platform} builder became free within ${this.options.acquireTimeoutMs} ms (last: ${pending.message})`);
      }
      await this.sleep(Math.max(50, pending.retryAfterMs), this.stop.signal);
      if (this.stop.signal.aborted) throw new CliError('INTERNAL', 'the build session closed while waiting for a builder');
    }
  }

  private startHeartbeat(build: CreatedBuild): void {
    clearInterval(this.heartbeatTimer);
    const timer = setInterval(() => {
      callGatewayApi<HeartbeatAnswer>(this.options.api, {
        method: 'POST',
        path: `/v1/builds/${build.buildId}/heartbeat`,
        token: build.token,
        timeoutMs: this.options.requestTimeoutMs,
      }).then(
        (answer) => {
          if (answer.token) build.token = answer.token;
          const lost = answer.allocations.find((a) => a.state !== 'active' && a.state !== 'pending');
          if (lost) {
            this.options.log.warn('build ended on the gateway', { buildId: build.buildId, platform: lost.platform, state: lost.state, reason: lost.reason ?? '' });
            this.forget();
          }
        },
        (err: unknown) => this.options.log.warn('build heartbeat failed', { buildId: build.buildId, reason: toCliError(err).message }),
      );
    }, build.heartbeatIntervalMs);
    timer.unref();
    this.heartbeatTimer = timer;
  }

  private forget(): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
    this.build = undefined;
    this.acquired.clear();
    this.builders.clear();
  }

  private async release(how: 'finish' | 'cancel', why: string): Promise<void> {
    const pending = this.build;
    this.forget();
    if (!pending) return;
    const build = await pending.catch(() => undefined);
    if (!build) return;
    try {
      await callGatewayApi(this.options.api, {
        method: 'POST',
        path: `/v1/builds/${build.buildId}/${how}`,
        token: build.token,
        body: how === 'cancel' ? { reason: why } : undefined,
        timeoutMs: this.options.requestTimeoutMs,
      });
      this.options.log.info(`build ${how === 'finish' ? 'finished' : 'cancelled'}`, { buildId: build.buildId, why });
    } catch (err) {
      // The gateway expires it when heartbeats stop; nothing is held for long.
      this.options.log.warn(`cannot ${how} the build`, { buildId: build.buildId, reason: toCliError(err).message });
    }
  }
}
