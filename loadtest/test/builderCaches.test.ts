import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BuilderCaches } from '../src/builderCaches.js';

describe('BuilderCaches', () => {
  it('with K=1 holds only the last project a builder built', () => {
    const c = new BuilderCaches(2, 1);
    assert.equal(c.holds(0, 'a'), false);
    c.record(0, 'a');
    assert.equal(c.holds(0, 'a'), true);
    assert.equal(c.holds(1, 'a'), false, 'caches are per builder');
    c.record(0, 'b');
    assert.equal(c.holds(0, 'a'), false);
    assert.equal(c.holds(0, 'b'), true);
  });

  it('with K=2 evicts the least recently built project', () => {
    const c = new BuilderCaches(1, 2);
    c.record(0, 'a');
    c.record(0, 'b');
    c.record(0, 'a'); // a is most recent again
    c.record(0, 'c'); // b goes
    assert.deepEqual(c.projects(0), ['c', 'a']);
    assert.equal(c.holds(0, 'b'), false);
  });

  it('refuses K < 1 and unknown builders', () => {
    assert.throws(() => new BuilderCaches(1, 0), RangeError);
    assert.throws(() => new BuilderCaches(1, 1).holds(1, 'a'), RangeError);
  });
});
