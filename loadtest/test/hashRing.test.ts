import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hash32, HashRing } from '../src/hashRing.js';

const builders = Array.from({ length: 20 }, (_, i) => `builder-${i}`);
const keys = Array.from({ length: 20_000 }, (_, i) => `project-${i}`);

function homes(ring: HashRing): string[] {
  return keys.map((k) => ring.builders[ring.home(k)]!);
}

describe('HashRing', () => {
  it('moves only the keys of a builder that leaves', () => {
    const before = homes(new HashRing(builders, 100));
    const gone = 'builder-7';
    const after = homes(new HashRing(builders.filter((b) => b !== gone), 100));
    let moved = 0;
    for (let i = 0; i < keys.length; i++) {
      if (before[i] === gone) {
        assert.notEqual(after[i], gone);
        moved++;
      } else {
        assert.equal(after[i], before[i], `${keys[i]} moved from ${before[i]} to ${after[i]} although ${gone} left`);
      }
    }
    assert.ok(moved > 0, `${gone} owned no key`);
  });

  it('gives a new builder keys only from others, about 1/n of them', () => {
    const before = homes(new HashRing(builders, 100));
    const after = homes(new HashRing([...builders, 'builder-new'], 100));
    let moved = 0;
    for (let i = 0; i < keys.length; i++) {
      if (after[i] !== before[i]) {
        assert.equal(after[i], 'builder-new', `${keys[i]} moved between old builders`);
        moved++;
      }
    }
    const share = moved / keys.length;
    assert.ok(share > 0.5 / 21 && share < 2 / 21, `new builder took ${(share * 100).toFixed(1)}% of keys`);
  });

  it('does not depend on the order builders are listed in', () => {
    const shuffled = [...builders].reverse();
    assert.deepEqual(homes(new HashRing(shuffled, 100)), homes(new HashRing(builders, 100)));
  });

  it('spreads keys over builders within a factor of two of even', () => {
    const counts = new Map<string, number>();
    for (const h of homes(new HashRing(builders, 100))) counts.set(h, (counts.get(h) ?? 0) + 1);
    const even = keys.length / builders.length;
    assert.equal(counts.size, builders.length);
    for (const [b, c] of counts) assert.ok(c > even / 2 && c < even * 2, `${b} owns ${c} keys, even is ${even}`);
  });

  it('walks on past builders that refuse, in ring order, and reports when none accepts', () => {
    const ring = new HashRing(builders, 100);
    const h = hash32('project-1');
    const home = ring.home('project-1');
    assert.equal(ring.walk(h, () => true), home);
    const second = ring.walk(h, (b) => b !== home);
    assert.ok(second !== undefined && second !== home);
    // Refusing the first two gives the third distinct builder on the ring, never one of the refused.
    const third = ring.walk(h, (b) => b !== home && b !== second);
    assert.ok(third !== undefined && third !== home && third !== second);
    assert.equal(ring.walk(h, () => false), undefined);
  });
});
