import type { BuildTrace } from './buildTrace.js';

// The most warm repeats a placer could get with `caches` builders that each hold one project's
// cache, if it starts builds in the order they arrive: Belady's optimal replacement (on a miss,
// evict the project needed again furthest in the future) over the trace. A build always leaves
// its project in the cache of the builder it ran on, so a miss must insert; slots and concurrency
// are ignored, which can only make the real figure lower. A placer that holds builds back for
// their builder (Slipway does, up to spillAfterMs or for an empty pool) changes the order and is
// not bounded by it. Counts only measured repeat builds, like PlacementTally.
export interface CacheBound {
  repeatBuilds: number;
  warmRepeat: number;
  warmRatio: number;
}

export function optimalCacheBound(trace: BuildTrace, caches: number): CacheBound {
  const n = trace.count;
  const nextUse = new Float64Array(n);
  const seenAt = new Map<number, number>();
  for (let i = n - 1; i >= 0; i--) {
    const p = trace.project[i]!;
    nextUse[i] = seenAt.get(p) ?? Infinity;
    seenAt.set(p, i);
  }
  const cached = new Map<number, number>(); // project -> its next use
  const heap = new MaxHeap();
  let repeatBuilds = 0;
  let warmRepeat = 0;
  for (let i = 0; i < n; i++) {
    const p = trace.project[i]!;
    const hit = cached.has(p);
    if (trace.measured[i] && trace.repeat[i]) {
      repeatBuilds++;
      if (hit) warmRepeat++;
    }
    if (!hit && cached.size >= caches) {
      // Stale heap entries (a project's next use moved on, or it was evicted) are skipped.
      for (;;) {
        const top = heap.pop()!;
        if (cached.get(top.project) === top.nextUse) {
          cached.delete(top.project);
          break;
        }
      }
    }
    cached.set(p, nextUse[i]!);
    heap.push(nextUse[i]!, p);
  }
  return { repeatBuilds, warmRepeat, warmRatio: repeatBuilds === 0 ? NaN : warmRepeat / repeatBuilds };
}

class MaxHeap {
  private readonly keys: number[] = [];
  private readonly values: number[] = [];

  push(nextUse: number, project: number): void {
    this.keys.push(nextUse);
    this.values.push(project);
    let i = this.keys.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.keys[parent]! >= this.keys[i]!) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  pop(): { nextUse: number; project: number } | undefined {
    if (this.keys.length === 0) return undefined;
    const top = { nextUse: this.keys[0]!, project: this.values[0]! };
    const last = this.keys.length - 1;
    this.swap(0, last);
    this.keys.pop();
    this.values.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < this.keys.length && this.keys[l]! > this.keys[m]!) m = l;
      if (r < this.keys.length && this.keys[r]! > this.keys[m]!) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
    return top;
  }

  private swap(i: number, j: number): void {
    [this.keys[i], this.keys[j]] = [this.keys[j]!, this.keys[i]!];
    [this.values[i], this.values[j]] = [this.values[j]!, this.values[i]!];
  }
}
