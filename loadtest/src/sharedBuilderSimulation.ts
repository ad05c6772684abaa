import { BuilderCaches } from './builderCaches.js';
import { projectName, type BuildTrace } from './buildTrace.js';
import { EventQueue } from './eventQueue.js';
import { PlacementTally, type PlacerSummary } from './placementTally.js';

// The comparison placers of bench:placement, which share builders between projects: a build
// starts at once on a builder with a free slot that the chooser picks; when every slot is taken,
// builds wait in one first-come queue and the next free slot goes to the oldest. Whether a build
// is warm is the BuilderCaches model's answer (the builder's last K projects), not the placer's.

export interface BuilderChooser {
  readonly name: string;
  /** Whether spills are counted: the placer has a preferred builder per project. */
  readonly hasPreference: boolean;
  /** A builder with a free slot for the project (`hasFreeSlot` says which); at least one has. */
  choose(project: string, hasFreeSlot: (builder: number) => boolean, freeBuilders: readonly number[]): number;
  /** The builder the project would go to if every builder were free. */
  preferred(project: string): number | undefined;
}

export interface SharedBuilderOptions {
  builders: number;
  capacity: number;
  /** Projects each builder's cache remembers. */
  cacheProjects: number;
}

type Event = { kind: 'arrive'; build: number } | { kind: 'end'; build: number; builder: number };

export function simulateSharedBuilders(trace: BuildTrace, chooser: BuilderChooser, opts: SharedBuilderOptions): PlacerSummary {
  const tally = new PlacementTally(trace, chooser.name, chooser.hasPreference);
  const caches = new BuilderCaches(opts.builders, opts.cacheProjects);
  const active = new Int32Array(opts.builders);
  // Builders with a free slot, in no particular order, with each one's index for O(1) removal.
  const free: number[] = Array.from({ length: opts.builders }, (_, i) => i);
  const freeAt = Int32Array.from(free);
  const hasFreeSlot = (b: number): boolean => active[b]! < opts.capacity;
  const events = new EventQueue<Event>();
  const queue: number[] = [];
  let queueHead = 0;

  const take = (b: number): void => {
    const taken = active[b]! + 1;
    active[b] = taken;
    if (taken < opts.capacity) return;
    const at = freeAt[b]!;
    const last = free.pop()!;
    if (last !== b) {
      free[at] = last;
      freeAt[last] = at;
    }
    freeAt[b] = -1;
  };
  const give = (b: number): void => {
    const before = active[b]!;
    active[b] = before - 1;
    // Only a builder that was full is missing from the free list.
    if (before !== opts.capacity) return;
    freeAt[b] = free.length;
    free.push(b);
  };
  const start = (build: number, now: number): void => {
    const project = projectName(trace.project[build]!);
    const b = chooser.choose(project, hasFreeSlot, free);
    const preferred = chooser.preferred(project);
    const warm = caches.holds(b, project);
    caches.record(b, project);
    take(b);
    tally.place(build, now - trace.arrivalMs[build]!, warm, preferred !== undefined && preferred !== b);
    events.push(now + trace.durationMs[build]!, { kind: 'end', build, builder: b });
  };

  for (let i = 0; i < trace.count; i++) events.push(trace.arrivalMs[i]!, { kind: 'arrive', build: i });
  for (let e = events.pop(); e !== undefined; e = events.pop()) {
    const { timeMs: now, item } = e;
    if (item.kind === 'arrive') {
      if (free.length > 0 && queueHead === queue.length) start(item.build, now);
      else queue.push(item.build);
    } else {
      give(item.builder);
      if (queueHead < queue.length) start(queue[queueHead++]!, now);
    }
    tally.noteWaiting(now, queue.length - queueHead);
  }
  return tally.summary();
}
