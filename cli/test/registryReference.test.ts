import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CliError } from '../src/cliError.js';
import { apiHostOf, parseImageReference } from '../src/build/imageReference.js';
import { isLoopbackRegistry, parseChallenges, RegistryClient } from '../src/build/registryClient.js';
import { platformOf } from '../src/build/imageIndex.js';

test('image names are read as the Docker CLI reads them', () => {
  const cases: [string, ReturnType<typeof parseImageReference>][] = [
    ['alpine', { registry: 'docker.io', repository: 'library/alpine', tag: 'latest', digest: undefined }],
    ['team/app:1.2', { registry: 'docker.io', repository: 'team/app', tag: '1.2', digest: undefined }],
    ['127.0.0.1:5000/app:1', { registry: '127.0.0.1:5000', repository: 'app', tag: '1', digest: undefined }],
    ['localhost/a/b/c', { registry: 'localhost', repository: 'a/b/c', tag: 'latest', digest: undefined }],
    ['registry.example.com/team/app', { registry: 'registry.example.com', repository: 'team/app', tag: 'latest', digest: undefined }],
    ['[::1]:5000/app:v', { registry: '[::1]:5000', repository: 'app', tag: 'v', digest: undefined }],
    [`ghcr.io/o/app:1@sha256:${'a'.repeat(64)}`, { registry: 'ghcr.io', repository: 'o/app', tag: '1', digest: `sha256:${'a'.repeat(64)}` }],
    [`app@sha256:${'b'.repeat(64)}`, { registry: 'docker.io', repository: 'library/app', tag: undefined, digest: `sha256:${'b'.repeat(64)}` }],
  ];
  for (const [name, expected] of cases) assert.deepEqual(parseImageReference(name), expected, name);
  assert.equal(apiHostOf('docker.io'), 'registry-1.docker.io');
  assert.equal(apiHostOf('127.0.0.1:5000'), '127.0.0.1:5000');
});

test('malformed image names are refused with the reason', () => {
  for (const [name, why] of [
    ['App:1', /'App' is not a repository path component/],
    ['127.0.0.1:5000/app:bad tag', /'bad tag' is not a tag/],
    ['app@sha256:short', /expected a digest/],
    ['127.0.0.1:5000/', /no repository/],
  ] as const) {
    assert.throws(() => parseImageReference(name), (err: unknown) => err instanceof CliError && err.code === 'CONFIG_INVALID' && why.test(err.message) && err.message.includes(name), name);
  }
});

test('WWW-Authenticate challenges: Bearer with quoted parameters (commas inside quotes), Basic, several at once', () => {
  const [bearer] = parseChallenges('Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/app:pull,push"');
  assert.equal(bearer?.scheme, 'bearer');
  assert.deepEqual(Object.fromEntries(bearer!.params), { realm: 'https://auth.example.com/token', service: 'registry.example.com', scope: 'repository:team/app:pull,push' });
  const both = parseChallenges('Basic realm="Registry Realm", Bearer realm="http://127.0.0.1:1/token",service=svc');
  assert.deepEqual(both.map((c) => [c.scheme, Object.fromEntries(c.params)]), [
    ['basic', { realm: 'Registry Realm' }],
    ['bearer', { realm: 'http://127.0.0.1:1/token', service: 'svc' }],
  ]);
  assert.deepEqual(parseChallenges(''), []);
});

test('loopback registries are spoken to over plain HTTP, others over HTTPS unless told', () => {
  for (const host of ['localhost:5000', '127.0.0.1:5000', '127.1.2.3', '[::1]:5000']) assert.ok(isLoopbackRegistry(host), host);
  for (const host of ['registry.example.com', '10.0.0.1:5000', 'localhost.example.com', '128.0.0.1']) assert.ok(!isLoopbackRegistry(host), host);
  assert.equal(new RegistryClient('127.0.0.1:5000', undefined).baseUrl, 'http://127.0.0.1:5000');
  assert.equal(new RegistryClient('docker.io', undefined).baseUrl, 'https://registry-1.docker.io');
  assert.equal(new RegistryClient('10.0.0.1:5000', undefined, { insecure: true }).baseUrl, 'http://10.0.0.1:5000');
  assert.equal(new RegistryClient('127.0.0.1:5000', undefined, { insecure: false }).baseUrl, 'https://127.0.0.1:5000');
});

test("an index entry's platform has no variant for arm64, as BuildKit and buildx write it", () => {
  assert.deepEqual(platformOf('linux/arm64'), { architecture: 'arm64', os: 'linux' });
  assert.deepEqual(platformOf('linux/amd64'), { architecture: 'amd64', os: 'linux' });
});
