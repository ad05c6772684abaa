import { hash32, HashRing } from './hashRing.js';
import type { SeededRandom } from './seededRandom.js';
import type { BuilderChooser } from './sharedBuilderSimulation.js';

// The two comparison placers. Neither knows about caches; the cache model judges them.

/** Any builder with a free slot, uniformly. No preference, so no spills. */
export function randomChooser(rng: SeededRandom): BuilderChooser {
  return {
    name: 'random',
    hasPreference: false,
    choose: (_project, _hasFreeSlot, freeBuilders) => freeBuilders[rng.int(freeBuilders.length)]!,
    preferred: () => undefined,
  };
}

/** The first builder with a free slot walking the ring from the project's point; preferred is the project's own. */
export function ringChooser(builders: readonly string[], virtualNodes: number): BuilderChooser {
  const ring = new HashRing(builders, virtualNodes);
  const hashes = new Map<string, number>();
  const hashOf = (project: string): number => {
    let h = hashes.get(project);
    if (h === undefined) hashes.set(project, (h = hash32(project)));
    return h;
  };
  return {
    name: 'consistent-hash',
    hasPreference: true,
    choose: (project, hasFreeSlot) => {
      const b = ring.walk(hashOf(project), hasFreeSlot);
      if (b === undefined) throw new RangeError(`no builder on the ring has a free slot for ${project}`);
      return b;
    },
    preferred: (project) => ring.walk(hashOf(project), () => true),
  };
}
