// MemoryRoutingTable's pool of one platform: builders in the order acquire takes them, the one
// idle longest (lowest idle-since time) first, equal times by agent id. That is the order of
// RedisRoutingTable's pool sorted set, which sorts equal scores by member bytes; the ids are
// ASCII, where JavaScript's string order is the same.
//
// A binary heap whose entries go stale instead of being removed: delete() and a new score only
// touch the map, and a stale entry is dropped when it reaches the top. The heap is rebuilt when
// stale entries outnumber live ones, so it stays within a constant factor of the pool.

interface Entry {
  idleSinceMs: number;
  agentId: string;
  /** Matches the map's seq while this entry is the member's current one. */
  seq: number;
}

export class IdlePool {
  private readonly current = new Map<string, { idleSinceMs: number; seq: number }>();
  private heap: Entry[] = [];
  private seq = 0;

  get size(): number {
    return this.current.size;
  }

  has(agentId: string): boolean {
    return this.current.has(agentId);
  }

  /** Adds the builder, or moves it to its new idle-since time. */
  set(agentId: string, idleSinceMs: number): void {
    if (this.current.get(agentId)?.idleSinceMs === idleSinceMs) return;
    const seq = ++this.seq;
    this.current.set(agentId, { idleSinceMs, seq });
    this.push({ idleSinceMs, agentId, seq });
    this.compactIfStale();
  }

  delete(agentId: string): void {
    if (this.current.delete(agentId)) this.compactIfStale();
  }

  /** Up to `limit` builders from the head, in order, left in the pool. */
  head(limit: number): string[] {
    const taken: Entry[] = [];
    while (taken.length < limit && this.heap.length > 0) {
      const top = this.pop();
      if (this.isCurrent(top)) taken.push(top);
    }
    for (const e of taken) this.push(e);
    return taken.map((e) => e.agentId);
  }

  private isCurrent(e: Entry): boolean {
    return this.current.get(e.agentId)?.seq === e.seq;
  }

  private compactIfStale(): void {
    if (this.heap.length <= 2 * this.current.size + 64) return;
    this.heap = [];
    for (const [agentId, { idleSinceMs, seq }] of this.current) this.push({ idleSinceMs, agentId, seq });
  }

  private push(e: Entry): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  private pop(): Entry {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

function before(a: Entry, b: Entry): boolean {
  return a.idleSinceMs < b.idleSinceMs || (a.idleSinceMs === b.idleSinceMs && a.agentId < b.agentId);
}
