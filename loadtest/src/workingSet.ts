import type { ZipfSampler } from './zipfSampler.js';

// The working set of a placement trace. With one project per builder, what has to fit for builds
// to stay warm is not the build slots but the projects that build within one retention window:
// each keeps a builder (its cache) bound for that long after its last build. Offered slot load
// says nothing about that (at 50% of the slots, hundreds of projects build per window), so
// bench:placement also runs a load whose arrival rate is chosen for the working set it makes.
//
// With Poisson arrivals at rate r and project k drawn with probability p_k, project k builds in
// a window of length W with probability 1 - e^(-r W p_k), so the mean number of distinct projects
// per window is the sum of those, which grows with r: the rate for a wanted number is found by
// bisection. That is the expectation over windows; buildTrace.distinctProjectsPerWindow measures
// what a drawn trace actually has.

/** Mean distinct projects with at least one arrival in a window of `windowMs`. */
export function expectedDistinctProjects(zipf: ZipfSampler, buildsPerMinute: number, windowMs: number): number {
  const arrivalsPerWindow = (buildsPerMinute * windowMs) / 60_000;
  let sum = 0;
  for (let k = 1; k <= zipf.n; k++) sum += -Math.expm1(-arrivalsPerWindow * zipf.probability(k));
  return sum;
}

/** The arrival rate (builds per minute) whose mean distinct projects per window is `projects`. */
export function buildsPerMinuteForDistinctProjects(zipf: ZipfSampler, projects: number, windowMs: number): number {
  if (!(projects > 0 && projects < zipf.n)) {
    throw new RangeError(`a working set of ${projects} projects needs more than 0 and fewer than the ${zipf.n} there are`);
  }
  let lo = 0;
  let hi = 1;
  while (expectedDistinctProjects(zipf, hi, windowMs) < projects) {
    lo = hi;
    hi *= 2;
  }
  // 60 halvings take the bracket below a double's precision of the rate.
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2;
    if (expectedDistinctProjects(zipf, mid, windowMs) < projects) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}
