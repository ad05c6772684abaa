import { performance } from 'node:perf_hooks';
import type { RoutingTable } from '@slipway/gateway';
import type { Platform } from '@slipway/proto';
import { summarize, type LatencySummary } from './latencyStats.js';
import type { SeededRandom } from './seededRandom.js';
import type { ZipfSampler } from './zipfSampler.js';

// Placement load on a shared routing table (bench:placement part 2): one RoutingTable per gateway
// replica, each on its own connection, used round-robin. A placement is what the gateway does for
// one build: acquire, then (the build being instant here) endAllocation. Two kinds, mixed:
// - warm: a project drawn from a Zipf set small enough that each keeps its builder; after its
//   first build it is placed on its own builder (the cheap path);
// - cold: a project never seen before, which takes a pool builder (the path that once sorted the
//   whole pool and now takes the head of the idle-ordered pool); its binding is released right
//   after, as the fleet's idle reclamation would, so the pool neither runs dry nor grows.
// While it runs, every replica renews every builder's lease every `renewIntervalMs` (spread
// evenly) and one replica reaps every second, as gateways do: that traffic shares Redis with the
// placements being timed.

export interface PlacementLoadOptions {
  tables: readonly RoutingTable[];
  gatewayIds: readonly string[];
  platform: Platform;
  builders: number;
  capacity: number;
  warmProjects: ZipfSampler;
  rng: SeededRandom;
  spillAfterMs: number;
  leaseMs: number;
  renewIntervalMs: number;
  reapIntervalMs: number;
  /** Prefix of build and project names, unique per run. */
  runId: string;
}

export type PlacementOutcome = 'warm' | 'pool' | 'pending' | 'error';

interface Sample {
  cold: boolean;
  outcome: PlacementOutcome;
  pendingReason: string | undefined;
  /** Acquire sent to reply received (ms). */
  acquireMs: number;
  endMs: number | undefined;
  /** Open loop: scheduled time to acquire reply (ms), the latency the target is about. */
  fromScheduleMs: number | undefined;
  /** Open loop: how late the dispatcher sent it (ms). */
  lateMs: number | undefined;
  doneAt: number;
}

export interface LoadRunResult {
  mode: 'open-loop' | 'closed-loop';
  /** Open loop: placements per second asked for; closed loop: undefined. */
  targetPerSec: number | undefined;
  /** Closed loop: placements in flight at once. */
  concurrency: number | undefined;
  durationMs: number;
  attempted: number;
  placed: number;
  warm: number;
  pool: number;
  pending: number;
  /** Pending answers by reason (busy: the project's builder was full; no-builder: the pool was empty). */
  pendingReasons: Record<string, number>;
  errors: number;
  firstError: string | undefined;
  /** The open loop stopped scheduling because too many placements were in flight. */
  overloaded: boolean;
  /** Placements (acquire answered active) per second. */
  achievedPerSec: number;
  /** Open loop: from the scheduled time to the acquire reply; closed loop: the acquire call. */
  acquire: LatencySummary | undefined;
  /** The acquire call alone (sent to reply). */
  acquireCall: LatencySummary | undefined;
  acquireCallWarm: LatencySummary | undefined;
  acquireCallCold: LatencySummary | undefined;
  endAllocation: LatencySummary | undefined;
  dispatchLate: LatencySummary | undefined;
  renewals: number;
  staleRenewals: number;
  reaps: number;
}

const MAX_IN_FLIGHT = 5_000;
const ALLOCATION_LEASE_MS = 60_000;

export class PlacementLoad {
  private readonly epochs = new Map<string, number>();
  private readonly agentIds: string[];
  private seq = 0;
  private renewTimer: NodeJS.Timeout | undefined;
  private reapTimer: NodeJS.Timeout | undefined;
  private readonly background = new Set<Promise<void>>();
  private firstError: string | undefined;
  private renewCursor = 0;
  private renewals = 0;
  private staleRenewals = 0;
  private reaps = 0;
  private backgroundError: unknown;

  private constructor(private readonly o: PlacementLoadOptions) {
    this.agentIds = Array.from({ length: o.builders }, (_, i) => `builder-${String(i).padStart(3, '0')}`);
  }

  /** Registers every builder with every replica (each holds a link, as agents keep one per replica). */
  static async start(o: PlacementLoadOptions): Promise<PlacementLoad> {
    const load = new PlacementLoad(o);
    const now = Date.now();
    for (const agentId of load.agentIds) {
      for (let r = 0; r < o.tables.length; r++) {
        const lease = await o.tables[r]!.registerBuilder({
          agentId,
          platform: o.platform,
          fleet: 'bench',
          capacity: o.capacity,
          gatewayId: o.gatewayIds[r]!,
          nowMs: now,
          leaseMs: o.leaseMs,
        });
        load.epochs.set(agentId, lease.epoch);
      }
    }
    load.startBackground();
    return load;
  }

  /** Placements scheduled at a fixed rate, whether or not earlier ones have answered. */
  async openLoop(perSec: number, durationMs: number, coldShare: number): Promise<LoadRunResult> {
    const counters = this.snapshotCounters();
    const intervalMs = 1000 / perSec;
    const total = Math.round((perSec * durationMs) / 1000);
    const samples: Sample[] = [];
    const inFlight = new Set<Promise<void>>();
    const startAt = performance.now() + 20;
    let next = 0;
    let overloaded = false;
    await new Promise<void>((resolve) => {
      const tick = (): void => {
        const now = performance.now();
        while (next < total && startAt + next * intervalMs <= now) {
          if (inFlight.size >= MAX_IN_FLIGHT) {
            overloaded = true;
            next = total;
            break;
          }
          const scheduledAt = startAt + next * intervalMs;
          const p = this.place(next, scheduledAt, coldShare).then((s) => {
            samples.push(s);
            inFlight.delete(p);
          });
          inFlight.add(p);
          next++;
        }
        if (next >= total) resolve();
        else setTimeout(tick, Math.max(0, startAt + next * intervalMs - performance.now()));
      };
      setTimeout(tick, Math.max(0, startAt - performance.now()));
    });
    await Promise.all(inFlight);
    const lastDone = samples.reduce((m, s) => Math.max(m, s.doneAt), startAt);
    return this.result('open-loop', perSec, undefined, samples, lastDone - startAt, overloaded, counters);
  }

  /** `concurrency` placements in flight at all times, each started when one finishes: the most the table takes. */
  async closedLoop(concurrency: number, durationMs: number, coldShare: number): Promise<LoadRunResult> {
    const counters = this.snapshotCounters();
    const samples: Sample[] = [];
    const startAt = performance.now();
    const stopAt = startAt + durationMs;
    let i = 0;
    const worker = async (): Promise<void> => {
      while (performance.now() < stopAt) samples.push(await this.place(i++, undefined, coldShare));
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return this.result('closed-loop', undefined, concurrency, samples, performance.now() - startAt, false, counters);
  }

  /** Stops the renewals and reaps. Idempotent. */
  async stop(): Promise<void> {
    clearInterval(this.renewTimer);
    clearInterval(this.reapTimer);
    this.renewTimer = undefined;
    this.reapTimer = undefined;
    await Promise.all(this.background);
    if (this.backgroundError !== undefined) throw this.backgroundError;
  }

  /** `coldShare` (0-1) of placements are a new project's first build. */
  private async place(n: number, scheduledAt: number | undefined, coldShare: number): Promise<Sample> {
    const o = this.o;
    const table = o.tables[n % o.tables.length]!;
    const id = `${o.runId}-${this.seq++}`;
    const cold = o.rng.next() < coldShare;
    const project = cold ? `${o.runId}-new-${id}` : `warm-${o.warmProjects.sample(o.rng)}`;
    const sentAt = performance.now();
    const sample: Sample = {
      cold,
      outcome: 'error',
      pendingReason: undefined,
      acquireMs: NaN,
      endMs: undefined,
      fromScheduleMs: undefined,
      lateMs: scheduledAt === undefined ? undefined : sentAt - scheduledAt,
      doneAt: sentAt,
    };
    try {
      const r = await table.acquire({ buildId: id, project, platform: o.platform, nowMs: Date.now(), spillAfterMs: o.spillAfterMs, allocationLeaseMs: ALLOCATION_LEASE_MS });
      const acquiredAt = performance.now();
      sample.acquireMs = acquiredAt - sentAt;
      if (scheduledAt !== undefined) sample.fromScheduleMs = acquiredAt - scheduledAt;
      sample.outcome = r.state === 'active' ? (r.warm ? 'warm' : 'pool') : 'pending';
      if (r.state !== 'active') sample.pendingReason = r.reason;
      // The build is instant: it ends (or, never placed, is cancelled) at once.
      await table.endAllocation(id, o.platform, r.state === 'active' ? 'finished' : 'cancelled', 'bench', Date.now());
      sample.endMs = performance.now() - acquiredAt;
      if (cold && r.state === 'active') await table.releaseBinding(r.agentId, o.platform);
    } catch (err) {
      sample.outcome = 'error';
      this.firstError ??= err instanceof Error ? err.message : String(err);
    }
    sample.doneAt = performance.now();
    return sample;
  }

  private startBackground(): void {
    const o = this.o;
    const tickMs = 100;
    const pairs = this.agentIds.length * o.tables.length;
    const perTick = Math.ceil((pairs * tickMs) / o.renewIntervalMs);
    this.renewTimer = setInterval(() => {
      for (let k = 0; k < perTick; k++) {
        const at = this.renewCursor++ % pairs;
        const agentId = this.agentIds[at % this.agentIds.length]!;
        const r = Math.floor(at / this.agentIds.length);
        this.track(
          o.tables[r]!.renewBuilder({ agentId, platform: o.platform, gatewayId: o.gatewayIds[r]!, epoch: this.epochs.get(agentId)!, nowMs: Date.now(), leaseMs: o.leaseMs, draining: false }).then((ok) => {
            this.renewals++;
            if (!ok) this.staleRenewals++;
          }),
        );
      }
    }, tickMs);
    this.reapTimer = setInterval(() => {
      this.track(
        o.tables[0]!.reap(o.platform, Date.now()).then(() => {
          this.reaps++;
        }),
      );
    }, o.reapIntervalMs);
  }

  private track(p: Promise<void>): void {
    const tracked = p.catch((err: unknown) => {
      this.backgroundError ??= err;
    });
    this.background.add(tracked);
    void tracked.finally(() => this.background.delete(tracked));
  }

  private snapshotCounters(): { renewals: number; staleRenewals: number; reaps: number; firstError: string | undefined } {
    this.firstError = undefined;
    return { renewals: this.renewals, staleRenewals: this.staleRenewals, reaps: this.reaps, firstError: undefined };
  }

  private result(
    mode: LoadRunResult['mode'],
    targetPerSec: number | undefined,
    concurrency: number | undefined,
    samples: Sample[],
    durationMs: number,
    overloaded: boolean,
    before: { renewals: number; staleRenewals: number; reaps: number },
  ): LoadRunResult {
    const ok = samples.filter((s) => s.outcome !== 'error');
    const placed = ok.filter((s) => s.outcome === 'warm' || s.outcome === 'pool');
    const maybe = (xs: number[]): LatencySummary | undefined => (xs.length === 0 ? undefined : summarize(xs));
    const acquireCall = ok.map((s) => s.acquireMs);
    return {
      mode,
      targetPerSec,
      concurrency,
      durationMs,
      attempted: samples.length,
      placed: placed.length,
      warm: ok.filter((s) => s.outcome === 'warm').length,
      pool: ok.filter((s) => s.outcome === 'pool').length,
      pending: ok.filter((s) => s.outcome === 'pending').length,
      pendingReasons: countBy(ok.flatMap((s) => (s.pendingReason === undefined ? [] : [s.pendingReason]))),
      errors: samples.length - ok.length,
      firstError: this.firstError,
      overloaded,
      achievedPerSec: placed.length / (durationMs / 1000),
      acquire: maybe(mode === 'open-loop' ? ok.map((s) => s.fromScheduleMs!) : acquireCall),
      acquireCall: maybe(acquireCall),
      acquireCallWarm: maybe(ok.filter((s) => !s.cold).map((s) => s.acquireMs)),
      acquireCallCold: maybe(ok.filter((s) => s.cold).map((s) => s.acquireMs)),
      endAllocation: maybe(ok.flatMap((s) => (s.endMs === undefined ? [] : [s.endMs]))),
      dispatchLate: maybe(samples.flatMap((s) => (s.lateMs === undefined ? [] : [s.lateMs]))),
      renewals: this.renewals - before.renewals,
      staleRenewals: this.staleRenewals - before.staleRenewals,
      reaps: this.reaps - before.reaps,
    };
  }
}

function countBy(values: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}
