import type { BuildTrace } from './buildTrace.js';
import { percentile } from './latencyStats.js';

// What one placer did with the measured builds of a trace. Builds that arrived during warm-up are
// placed but not counted. The warm-hit ratio is over *repeat* builds only (the project had a build
// arrive within the retention window before), since no placer can have a cache for the others;
// those first or expired builds are counted apart.
export interface PlacerSummary {
  placer: string;
  /** Builds that arrived in the measurement window. */
  measuredBuilds: number;
  placed: number;
  /** Still waiting when the simulation stopped (its drain limit). */
  unplaced: number;
  repeatBuilds: number;
  warmRepeat: number;
  /** warmRepeat / repeatBuilds. */
  warmRatio: number;
  /** Measured builds that are not repeats: first builds of a project, or after a gap longer than the retention window. */
  firstBuilds: number;
  warmFirst: number;
  /** Builds not placed on the builder the placer preferred; undefined where a placer prefers none. */
  spills: number | undefined;
  /** Virtual queue wait from arrival to placement, of placed measured builds. */
  waitP50Ms: number;
  waitP99Ms: number;
  waitMaxMs: number;
  waitMeanMs: number;
  /** Most builds waiting at once during the measurement window (all builds, not only measured ones). */
  peakWaiting: number;
}

export class PlacementTally {
  private readonly placedAt = new Map<number, { waitMs: number; warm: boolean; spilled: boolean }>();
  private peakWaiting = 0;

  constructor(
    private readonly trace: BuildTrace,
    private readonly placer: string,
    private readonly countsSpills: boolean,
  ) {}

  place(build: number, waitMs: number, warm: boolean, spilled: boolean): void {
    if (!this.trace.measured[build]) return;
    if (this.placedAt.has(build)) throw new RangeError(`build ${build} placed twice by ${this.placer}`);
    this.placedAt.set(build, { waitMs, warm, spilled });
  }

  /** How many builds wait at virtual time `nowMs`. */
  noteWaiting(nowMs: number, waiting: number): void {
    if (nowMs >= this.trace.warmupEndMs && nowMs < this.trace.endMs && waiting > this.peakWaiting) this.peakWaiting = waiting;
  }

  isPlaced(build: number): boolean {
    return this.placedAt.has(build);
  }

  summary(): PlacerSummary {
    const t = this.trace;
    let measuredBuilds = 0;
    let repeatBuilds = 0;
    let warmRepeat = 0;
    let firstBuilds = 0;
    let warmFirst = 0;
    let spills = 0;
    const waits: number[] = [];
    for (let i = 0; i < t.count; i++) {
      if (!t.measured[i]) continue;
      measuredBuilds++;
      const p = this.placedAt.get(i);
      if (t.repeat[i]) repeatBuilds++;
      else firstBuilds++;
      if (p === undefined) continue;
      waits.push(p.waitMs);
      if (p.warm && t.repeat[i]) warmRepeat++;
      if (p.warm && !t.repeat[i]) warmFirst++;
      if (p.spilled) spills++;
    }
    waits.sort((a, b) => a - b);
    const some = waits.length > 0;
    return {
      placer: this.placer,
      measuredBuilds,
      placed: waits.length,
      unplaced: measuredBuilds - waits.length,
      repeatBuilds,
      warmRepeat,
      warmRatio: repeatBuilds === 0 ? NaN : warmRepeat / repeatBuilds,
      firstBuilds,
      warmFirst,
      spills: this.countsSpills ? spills : undefined,
      waitP50Ms: some ? percentile(waits, 50) : NaN,
      waitP99Ms: some ? percentile(waits, 99) : NaN,
      waitMaxMs: some ? waits[waits.length - 1]! : NaN,
      waitMeanMs: some ? waits.reduce((a, b) => a + b, 0) / waits.length : NaN,
      peakWaiting: this.peakWaiting,
    };
  }
}
