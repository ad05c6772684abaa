import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayError } from '../../src/gatewayError.js';
import {
  claimPatternMatches,
  matchTrustPolicy,
  validateTrustPolicies,
  validateTrustPolicy,
  type TrustPolicy,
} from '../../src/oidc/trustPolicy.js';

const GITHUB = 'https://token.actions.githubusercontent.com';

const policy: TrustPolicy = {
  id: 'web-main',
  project: 'web',
  issuer: GITHUB,
  audience: 'https://slipway.example',
  conditions: { repository: 'acme/web', ref: 'refs/heads/main' },
};

function claims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    iss: GITHUB,
    aud: 'https://slipway.example',
    sub: 'repo:acme/web:ref:refs/heads/main',
    repository: 'acme/web',
    repository_owner: 'acme',
    ref: 'refs/heads/main',
    workflow: 'build',
    event_name: 'push',
    ...overrides,
  };
}

function configInvalid(...patterns: RegExp[]) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof GatewayError, String(err));
    assert.equal(err.code, 'CONFIG_INVALID');
    for (const p of patterns) assert.match(err.message, p);
    return true;
  };
}

describe('trust policy validation', () => {
  it('accepts a well-formed policy and returns a frozen copy', () => {
    const input = { ...policy, conditions: { ...policy.conditions }, untrustedWhen: { event_name: 'pull_request' }, scopes: ['build'], tokenTtlSec: 900 };
    const [valid] = validateTrustPolicies([input]);
    assert.deepEqual(valid, input);
    assert.notEqual(valid, input);
    assert.ok(Object.isFrozen(valid) && Object.isFrozen(valid!.conditions) && Object.isFrozen(valid!.untrustedWhen));
    input.conditions.repository = 'evil/web';
    assert.equal(valid!.conditions['repository'], 'acme/web');
  });

  it('names every problem of every policy at once', () => {
    const bad = {
      id: 'bad id!',
      project: 'Web App',
      issuer: 'http://gitlab.example.com',
      audience: '',
      conditions: { aud: 'x', 'a..b': 'y', ref: 'refs/***' },
      untrustedWhen: { event_name: '' },
      scopes: ['build', 'two words'],
      tokenTtlSec: 10,
      condition: { repository: 'typo' },
    };
    assert.throws(
      () => validateTrustPolicies([policy, bad, { ...policy }], 'policies.json'),
      configInvalid(
        /^policies\.json: /,
        /policy 'bad id!': id is 'bad id!', expected a name matching/,
        /project is 'Web App', expected a project name/,
        /issuer 'http:\/\/gitlab\.example\.com' is http, expected an https:\/\/ URL/,
        /audience is '', expected a non-empty string/,
        /conditions\['aud'\]: 'aud' cannot be a condition \(use the policy's audience\)/,
        /conditions\['a\.\.b'\]: a claim name must be a non-empty dot path/,
        /conditions\['ref'\] is 'refs\/\*\*\*': use '\*' for one path segment or '\*\*' for anything/,
        /conditions name no subject claim/,
        /untrustedWhen\['event_name'\] is '', expected a non-empty pattern/,
        /scopes\[1\] is 'two words'/,
        /tokenTtlSec is 10, expected a whole number of seconds from 60 to 43200/,
        /unknown field 'condition'/,
        /policy 'web-main': id is also used by policy #0/,
      ),
    );
  });

  it('refuses a policy that trusts every identity of its issuer unless told to', () => {
    for (const conditions of [{}, { event_name: 'push' }, { repository: '*' }, { sub: '**', ref: 'refs/heads/main' }]) {
      assert.throws(
        () => validateTrustPolicy({ ...policy, conditions }),
        configInvalid(/every identity the issuer vouches for would be trusted/, /allowAnySubject: true/),
        JSON.stringify(conditions),
      );
      assert.equal(validateTrustPolicy({ ...policy, conditions, allowAnySubject: true }).allowAnySubject, true);
    }
    assert.throws(() => validateTrustPolicy({ ...policy, allowAnySubject: 'yes' }), configInvalid(/allowAnySubject is 'yes', expected true or false/));
    // A subject claim of any supported CI is enough.
    for (const claim of ['sub', 'repository_owner', 'project_path', 'oidc.circleci.com/project-id', 'organization_slug']) {
      validateTrustPolicy({ ...policy, conditions: { [claim]: 'acme*' } });
    }
  });

  it('refuses inputs that are not lists or objects', () => {
    assert.throws(() => validateTrustPolicies({ policy }), configInvalid(/expected a list of policies, got an object/));
    assert.throws(() => validateTrustPolicies([null, 'x']), configInvalid(/policy #0: expected an object, got null/, /policy #1: expected an object/));
    assert.throws(() => validateTrustPolicy({ ...policy, conditions: ['repository'] }), configInvalid(/conditions is a list of 1, expected an object/));
  });
});

describe('claim patterns', () => {
  const cases: Array<[pattern: string, value: string, expected: boolean]> = [
    ['acme/web', 'acme/web', true],
    ['acme/web', 'acme/web2', false],
    ['acme/web', 'Acme/web', false],
    ['refs/heads/release/*', 'refs/heads/release/1.2', true],
    ['refs/heads/release/*', 'refs/heads/release/1/2', false],
    ['refs/heads/release/*', 'refs/heads/release/', true],
    ['refs/heads/release/*', 'refs/heads/release', false],
    ['refs/heads/**', 'refs/heads/feature/a/b', true],
    ['refs/heads/**', 'refs/heads/', true],
    ['refs/heads/**', 'refs/tags/v1', false],
    ['pull_request*', 'pull_request', true],
    ['pull_request*', 'pull_request_target', true],
    ['repo:acme/*:ref:refs/heads/main', 'repo:acme/web:ref:refs/heads/main', true],
    ['repo:acme/*:ref:refs/heads/main', 'repo:acme/web:ref:refs/heads/dev', false],
    ['repo:acme/*:ref:refs/heads/main', 'repo:evil/acme/web:ref:refs/heads/main', false],
    ['v*.*', 'v1.2', true],
    ['v*.*', 'v1', false],
    ['a.b', 'aXb', false], // No regex semantics leak through.
    ['*', 'anything-without-slash', true],
    ['*', '', true],
    ['*/*', 'acme/web/extra', false],
    ['**', 'acme/web/extra', true],
  ];
  for (const [pattern, value, expected] of cases) {
    it(`'${pattern}' ${expected ? 'matches' : 'does not match'} '${value}'`, () => {
      assert.equal(claimPatternMatches(pattern, value), expected);
    });
  }

  it('stays correct on patterns that would make a backtracking matcher explode', () => {
    const value = 'a'.repeat(5000);
    assert.equal(claimPatternMatches('*a*a*a*a*a*a*a*a*a*a*b', value), false);
    assert.equal(claimPatternMatches('**a**a**a**a**a**a**a**a', value), true);
  });
});

describe('matching claims against a policy', () => {
  it('matches when issuer, audience and every condition match', () => {
    assert.deepEqual(matchTrustPolicy(policy, claims()), { matched: true, trusted: true, untrustedBy: [] });
    assert.deepEqual(matchTrustPolicy(policy, claims({ aud: ['other', 'https://slipway.example'] })).matched, true);
  });

  it('names each claim that did not match, and nothing else', () => {
    const result = matchTrustPolicy(policy, claims({ repository: 'evil/web', ref: 'refs/heads/dev' }));
    assert.equal(result.matched, false);
    assert.ok(!result.matched);
    assert.deepEqual(result.mismatches, [
      "repository is 'evil/web', expected 'acme/web'",
      "ref is 'refs/heads/dev', expected 'refs/heads/main'",
    ]);
    assert.ok(!result.mismatches.join(' ').includes('workflow'));
  });

  it('checks issuer and audience itself, so it is safe on any claim set', () => {
    const result = matchTrustPolicy(policy, claims({ iss: 'https://gitlab.com', aud: 'sts.amazonaws.com' }));
    assert.ok(!result.matched);
    assert.deepEqual(result.mismatches, [
      "iss is 'https://gitlab.com', expected 'https://token.actions.githubusercontent.com'",
      "aud is 'sts.amazonaws.com', expected 'https://slipway.example'",
    ]);
  });

  it('reports missing and non-string claims', () => {
    const { ref: _ref, ...withoutRef } = claims({ repository: { name: 'acme/web' } });
    const result = matchTrustPolicy(policy, withoutRef);
    assert.ok(!result.matched);
    assert.deepEqual(result.mismatches, [
      `repository is {"name":"acme/web"}, not a string, expected 'acme/web'`,
      "ref is missing, expected 'refs/heads/main'",
    ]);
  });

  it('reads nested claims by dot path, and flat claim names that contain dots', () => {
    const nested: TrustPolicy = {
      ...policy,
      conditions: { repository: 'acme/web', 'context.environment.name': 'prod', 'oidc.circleci.com/project-id': 'p-1', run_attempt: '1' },
    };
    const ok = claims({ context: { environment: { name: 'prod' } }, 'oidc.circleci.com/project-id': 'p-1', run_attempt: 1 });
    assert.equal(matchTrustPolicy(nested, ok).matched, true);
    const wrong = matchTrustPolicy(nested, claims({ context: { environment: 'prod' }, 'oidc.circleci.com/project-id': 'p-2', run_attempt: true }));
    assert.ok(!wrong.matched);
    assert.deepEqual(wrong.mismatches, [
      "context.environment.name is missing, expected 'prod'",
      "oidc.circleci.com/project-id is 'p-2', expected 'p-1'",
      "run_attempt is 'true', expected '1'",
    ]);
  });

  it('never reaches inherited properties through a claim path', () => {
    const sneaky: TrustPolicy = { ...policy, conditions: { repository: 'acme/web', 'constructor.name': 'Object' } };
    const result = matchTrustPolicy(sneaky, claims());
    assert.ok(!result.matched);
    assert.deepEqual(result.mismatches, ["constructor.name is missing, expected 'Object'"]);
  });

  it('marks a match untrusted when any untrustedWhen claim matches', () => {
    const withForks: TrustPolicy = { ...policy, conditions: { repository: 'acme/web' }, untrustedWhen: { event_name: 'pull_request*', head_ref: 'dependabot/**' } };
    assert.deepEqual(matchTrustPolicy(withForks, claims()), { matched: true, trusted: true, untrustedBy: [] });
    assert.deepEqual(matchTrustPolicy(withForks, claims({ event_name: 'pull_request_target', ref: 'refs/pull/7/merge' })), {
      matched: true,
      trusted: false,
      untrustedBy: ['event_name'],
    });
    assert.deepEqual(matchTrustPolicy(withForks, claims({ event_name: 'pull_request', head_ref: 'dependabot/npm/x' })), {
      matched: true,
      trusted: false,
      untrustedBy: ['event_name', 'head_ref'],
    });
  });
});
