// The CLI's registry client and its multi-platform index against a real docker-registry
// (distribution 2.8): real blobs and manifests pushed with the user's credentials from a real
// config.json, the index written under every tag and read back, and the failures a user meets.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startRegistry, startSquid, type Registry, type Squid } from '@slipway/e2e';
import { CliError } from '../../cli/src/cliError.js';
import { pushImageIndex, type PlatformManifest } from '../../cli/src/build/imageIndex.js';
import { OCI_INDEX, OCI_MANIFEST, RegistryClient, sha256Digest } from '../../cli/src/build/registryClient.js';
import { loadRegistryCredentials, type RegistryCredentials } from '../../cli/src/build/registryCredentials.js';

let scratch: string;
before(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'slipway-registry-index-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Credentials as a user has them: a config.json in a DOCKER_CONFIG folder. */
async function credentialsFile(auths: Record<string, { username: string; password: string }>): Promise<RegistryCredentials> {
  const dir = await mkdtemp(path.join(scratch, 'docker-'));
  const config = { auths: Object.fromEntries(Object.entries(auths).map(([host, c]) => [host, { auth: Buffer.from(`${c.username}:${c.password}`).toString('base64') }])) };
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(config));
  return loadRegistryCredentials({ DOCKER_CONFIG: dir, PATH: process.env.PATH });
}

/** A small real image for one platform: a layer, a config naming the platform, an OCI manifest. */
async function pushImage(client: RegistryClient, repository: string, platform: 'linux/amd64' | 'linux/arm64'): Promise<PlatformManifest> {
  const [os_, architecture] = platform.split('/') as [string, string];
  const layer = await client.pushBlob(repository, Buffer.from(`layer of ${platform} ${Math.random()}`));
  const config = Buffer.from(JSON.stringify({ architecture, os: os_, rootfs: { type: 'layers', diff_ids: [layer.digest] }, config: {} }));
  const configBlob = await client.pushBlob(repository, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configBlob.digest, size: configBlob.size },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layer.digest, size: layer.size }],
    }),
  );
  const stored = await client.putManifest(repository, sha256Digest(manifest), OCI_MANIFEST, manifest);
  return { platform, digest: stored.digest, mediaType: OCI_MANIFEST, size: manifest.length };
}

async function refusal(promise: Promise<unknown>): Promise<CliError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof CliError, `expected a CliError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a CliError, got success');
}

describe('registry with htpasswd Basic auth', () => {
  let registry: Registry;
  let credentials: RegistryCredentials;
  before(async () => {
    registry = await startRegistry({ auth: true });
    credentials = await credentialsFile({ [registry.host]: registry.credentials! });
  });
  after(async () => {
    await registry?.stop();
  });

  test('an OCI index of two platforms is written under every tag and reads back with both platforms', async () => {
    const client = new RegistryClient(registry.host, credentials);
    const amd64 = await pushImage(client, 'team/app', 'linux/amd64');
    const arm64 = await pushImage(client, 'team/app', 'linux/arm64');
    client.close();
    // The builder may not say the media type or size: the registry's word is taken.
    const pushed = await pushImageIndex([`${registry.host}/team/app:1`, `${registry.host}/team/app:latest`], [amd64, { ...arm64, mediaType: '', size: 0 }], credentials);
    const { digest } = pushed;
    assert.equal(pushed.mediaType, OCI_INDEX);

    for (const tag of ['1', 'latest']) {
      // Read back with the harness's own HTTP, not the client under test.
      const res = await registry.request(`/v2/team/app/manifests/${tag}`, { headers: { accept: OCI_INDEX } });
      assert.equal(res.status, 200, res.body.toString());
      assert.equal(res.headers['content-type'], OCI_INDEX);
      assert.equal(res.headers['docker-content-digest'], digest);
      assert.equal(sha256Digest(res.body), digest);
      assert.equal(res.body.length, pushed.size);
      const index = JSON.parse(res.body.toString()) as { schemaVersion: number; mediaType: string; manifests: { mediaType: string; digest: string; size: number; platform: Record<string, string> }[] };
      assert.equal(index.schemaVersion, 2);
      assert.equal(index.mediaType, OCI_INDEX);
      assert.deepEqual(index.manifests, [
        { mediaType: OCI_MANIFEST, digest: amd64.digest, size: amd64.size, platform: { architecture: 'amd64', os: 'linux' } },
        { mediaType: OCI_MANIFEST, digest: arm64.digest, size: arm64.size, platform: { architecture: 'arm64', os: 'linux' } },
      ]);
      // Each entry resolves to the platform's manifest, whose config names that platform.
      for (const entry of index.manifests) {
        const manifest = await registry.request(`/v2/team/app/manifests/${entry.digest}`, { headers: { accept: OCI_MANIFEST } });
        assert.equal(manifest.status, 200);
        assert.equal(manifest.body.length, entry.size);
        const configDigest = (JSON.parse(manifest.body.toString()) as { config: { digest: string } }).config.digest;
        const config = JSON.parse((await registry.request(`/v2/team/app/blobs/${configDigest}`)).body.toString()) as { architecture: string; os: string };
        assert.deepEqual({ architecture: config.architecture, os: config.os }, entry.platform);
      }
    }
    // The client reads it back the same way.
    const reader = new RegistryClient(registry.host, credentials);
    const back = await reader.getManifest('team/app', digest);
    reader.close();
    assert.equal(back.descriptor.mediaType, OCI_INDEX);
  });

  test("a builder's own index (its image and an attestation) is merged: its entries join the new index", async () => {
    const client = new RegistryClient(registry.host, credentials);
    const amd64 = await pushImage(client, 'team/attested', 'linux/amd64');
    const arm64 = await pushImage(client, 'team/attested', 'linux/arm64');
    // An attestation manifest as BuildKit attaches them: platform unknown/unknown, pointing at its subject.
    const statement = await client.pushBlob('team/attested', Buffer.from('{"_type":"https://in-toto.io/Statement/v0.1"}'));
    const emptyConfig = await client.pushBlob('team/attested', Buffer.from('{}'));
    const attestation = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: emptyConfig.digest, size: emptyConfig.size }, layers: [{ mediaType: 'application/vnd.in-toto+json', digest: statement.digest, size: statement.size }] }));
    const att = await client.putManifest('team/attested', sha256Digest(attestation), OCI_MANIFEST, attestation);
    const builderIndex = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        { mediaType: OCI_MANIFEST, digest: arm64.digest, size: arm64.size, platform: { architecture: 'arm64', os: 'linux' } },
        { mediaType: OCI_MANIFEST, digest: att.digest, size: att.size, platform: { architecture: 'unknown', os: 'unknown' }, annotations: { 'vnd.docker.reference.digest': arm64.digest, 'vnd.docker.reference.type': 'attestation-manifest' } },
      ],
    }));
    const nested = await client.putManifest('team/attested', sha256Digest(builderIndex), OCI_INDEX, builderIndex);
    client.close();
    const { digest } = await pushImageIndex([`${registry.host}/team/attested:1`], [amd64, { platform: 'linux/arm64', digest: nested.digest, mediaType: '', size: 0 }], credentials);
    const res = await registry.request('/v2/team/attested/manifests/1', { headers: { accept: OCI_INDEX } });
    assert.equal(res.headers['docker-content-digest'], digest);
    const index = JSON.parse(res.body.toString()) as { manifests: { digest: string; platform: { os: string; architecture: string }; annotations?: Record<string, string> }[] };
    assert.deepEqual(index.manifests.map((m) => [m.digest, `${m.platform.os}/${m.platform.architecture}`]), [[amd64.digest, 'linux/amd64'], [arm64.digest, 'linux/arm64'], [att.digest, 'unknown/unknown']]);
    assert.equal(index.manifests[2]!.annotations?.['vnd.docker.reference.digest'], arm64.digest);
  });

  test('a wrong password is a REGISTRY_FAILED error naming the URL, the 401 and where the credentials came from', async () => {
    const client = new RegistryClient(registry.host, credentials);
    const image = await pushImage(client, 'team/wrongpw', 'linux/amd64');
    client.close();
    const wrong = await credentialsFile({ [registry.host]: { username: registry.credentials!.username, password: 'not-the-password' } });
    const err = await refusal(pushImageIndex([`${registry.host}/team/wrongpw:1`], [image], wrong));
    assert.equal(err.code, 'REGISTRY_FAILED');
    assert.match(err.message, new RegExp(`http://${registry.host.replace(/\./g, '\\.')}/v2/team/wrongpw/manifests/`));
    assert.match(err.message, /401 Unauthorized/);
    assert.match(err.message, /config\.json/);
    assert.match(err.message, /they are wrong, or lack pull access to team\/wrongpw/);
    assert.doesNotMatch(err.message, /not-the-password/);
    assert.equal((await registry.request('/v2/team/wrongpw/manifests/1')).status, 404, 'nothing was written');
  });

  test('no credentials for the registry: the error says to log in to it', async () => {
    const none = await credentialsFile({ 'elsewhere.example.com': { username: 'u', password: 'p' } });
    const err = await refusal(pushImageIndex([`${registry.host}/team/app:2`], [{ platform: 'linux/amd64', digest: `sha256:${'a'.repeat(64)}`, mediaType: '', size: 0 }], none));
    assert.equal(err.code, 'REGISTRY_FAILED');
    assert.match(err.message, new RegExp(`no credentials for ${registry.host.replace(/\./g, '\\.')}`));
    assert.match(err.message, new RegExp(`docker login ${registry.host.replace(/\./g, '\\.')}`));
  });

  test('a platform image that is not in the repository is refused before anything is written', async () => {
    const client = new RegistryClient(registry.host, credentials);
    const amd64 = await pushImage(client, 'team/partial', 'linux/amd64');
    client.close();
    const missing = `sha256:${'b'.repeat(64)}`;
    const err = await refusal(pushImageIndex([`${registry.host}/team/partial:1`], [amd64, { platform: 'linux/arm64', digest: missing, mediaType: OCI_MANIFEST, size: 100 }], credentials));
    assert.equal(err.code, 'REGISTRY_FAILED');
    assert.match(err.message, new RegExp(`the linux/arm64 image ${missing} is not in ${registry.host.replace(/\./g, '\\.')}/team/partial`));
    assert.equal((await registry.request('/v2/team/partial/manifests/1')).status, 404);
  });

  test('names in two repositories: each must hold every platform, and the error says so', async () => {
    const client = new RegistryClient(registry.host, credentials);
    const amd64 = await pushImage(client, 'team/one', 'linux/amd64');
    client.close();
    const err = await refusal(pushImageIndex([`${registry.host}/team/one:1`, `${registry.host}/team/two:1`], [amd64], credentials));
    assert.match(err.message, /is not in .*team\/two.*each repository must hold every platform's image/);
    assert.equal((await registry.request('/v2/team/one/manifests/1')).status, 404, 'no repository got the index');

    // Once the other repository holds the same manifest (blobs and all), both get the same index.
    const copier = new RegistryClient(registry.host, credentials);
    const manifest = await copier.getManifest('team/one', amd64.digest);
    const parsed = JSON.parse(manifest.body.toString()) as { config: { digest: string }; layers: { digest: string }[] };
    for (const blob of [parsed.config.digest, ...parsed.layers.map((l) => l.digest)]) await copier.pushBlob('team/two', await copier.getBlob('team/one', blob));
    await copier.putManifest('team/two', amd64.digest, OCI_MANIFEST, manifest.body);
    copier.close();
    const { digest } = await pushImageIndex([`${registry.host}/team/one:1`, `${registry.host}/team/two:1`], [amd64], credentials);
    for (const repo of ['team/one', 'team/two']) assert.equal((await registry.request(`/v2/${repo}/manifests/1`, { headers: { accept: OCI_INDEX } })).headers['docker-content-digest'], digest);
  });
});

test('an anonymous registry needs no credentials', async () => {
  const registry = await startRegistry();
  try {
    const none = loadRegistryCredentials({ DOCKER_CONFIG: path.join(scratch, 'no-such-folder') });
    const client = new RegistryClient(registry.host, none);
    const image = await pushImage(client, 'app', 'linux/arm64');
    client.close();
    const { digest } = await pushImageIndex([`${registry.host}/app:1`], [image], none);
    const res = await registry.request('/v2/app/manifests/1', { headers: { accept: OCI_INDEX } });
    assert.equal(res.headers['docker-content-digest'], digest);
  } finally {
    await registry.stop();
  }
});

describe('registry with token auth (Bearer challenges, a token server)', () => {
  let registry: Registry;
  before(async () => {
    registry = await startRegistry({ tokenAuth: true });
  });
  after(async () => {
    await registry?.stop();
  });

  async function configWith(entry: Record<string, string>): Promise<RegistryCredentials> {
    const dir = await mkdtemp(path.join(scratch, 'docker-token-'));
    await writeFile(path.join(dir, 'config.json'), JSON.stringify({ auths: { [registry.host]: entry } }));
    return loadRegistryCredentials({ DOCKER_CONFIG: dir });
  }

  test('with a password, a token is fetched from the realm for the repository scope and the index is written', async () => {
    const user = registry.credentials!;
    const credentials = await configWith({ auth: Buffer.from(`${user.username}:${user.password}`).toString('base64') });
    const image = await registry.pushImage('team/tokened', 'amd64-only', { files: { 'hello.txt': 'hi\n' }, platform: 'linux/amd64' });
    const before = registry.tokenServer!.requests.length;
    const { digest } = await pushImageIndex([`${registry.host}/team/tokened:1`], [{ platform: 'linux/amd64', digest: image.digest, mediaType: '', size: 0 }], credentials);
    const asked = registry.tokenServer!.requests.slice(before);
    assert.ok(asked.length >= 1, 'the token server was asked');
    for (const r of asked) {
      assert.equal(r.status, 200);
      assert.equal(r.via, 'basic');
      assert.equal(r.user, user.username);
      assert.equal(r.service, registry.tokenServer!.service);
    }
    assert.ok(asked.some((r) => r.scopes.includes('repository:team/tokened:pull,push')), `a push scope was asked: ${JSON.stringify(asked.map((r) => r.scopes))}`);
    const res = await registry.request('/v2/team/tokened/manifests/1', { headers: { accept: OCI_INDEX } });
    assert.equal(res.status, 200);
    assert.equal(res.headers['docker-content-digest'], digest);
    const index = JSON.parse(res.body.toString()) as { manifests: { digest: string; size: number; platform: unknown }[] };
    assert.deepEqual(index.manifests.map((m) => [m.digest, m.size, m.platform]), [[image.digest, image.size, { architecture: 'amd64', os: 'linux' }]]);
  });

  test('an identity token from config.json is exchanged with the OAuth refresh grant', async () => {
    const credentials = await configWith({ identitytoken: registry.credentials!.identityToken! });
    const image = await registry.pushImage('team/oauth', 'base', { files: { 'a.txt': 'a\n' }, platform: 'linux/arm64' });
    const before = registry.tokenServer!.requests.length;
    await pushImageIndex([`${registry.host}/team/oauth:1`], [{ platform: 'linux/arm64', digest: image.digest, mediaType: OCI_MANIFEST, size: image.size }], credentials);
    const asked = registry.tokenServer!.requests.slice(before);
    assert.ok(asked.length >= 1);
    for (const r of asked) assert.deepEqual([r.method, r.via, r.user, r.status], ['POST', 'refresh_token', registry.credentials!.username, 200]);
    assert.equal((await registry.request('/v2/team/oauth/manifests/1', { headers: { accept: OCI_INDEX } })).status, 200);
  });

  test('a wrong password is refused by the token server, and the error says so', async () => {
    const credentials = await configWith({ auth: Buffer.from(`${registry.credentials!.username}:wrong-password`).toString('base64') });
    const err = await refusal(pushImageIndex([`${registry.host}/team/tokened:2`], [{ platform: 'linux/amd64', digest: `sha256:${'c'.repeat(64)}`, mediaType: '', size: 0 }], credentials));
    assert.equal(err.code, 'REGISTRY_FAILED');
    assert.match(err.message, /the token server http:\/\/127\.0\.0\.1:\d+\/token \(realm of 127\.0\.0\.1:\d+\) answered 401 \(UNAUTHORIZED: wrong user name or password\) to the credentials for/);
    assert.doesNotMatch(err.message, /wrong-password/);
  });

  test('anonymous: the token grants nothing, and the registry\'s 401 says to log in', async () => {
    const none = loadRegistryCredentials({ DOCKER_CONFIG: path.join(scratch, 'none-here') });
    const err = await refusal(pushImageIndex([`${registry.host}/team/tokened:3`], [{ platform: 'linux/amd64', digest: `sha256:${'d'.repeat(64)}`, mediaType: '', size: 0 }], none));
    assert.match(err.message, /401 Unauthorized and there are no credentials for .*log in with docker login/);
    assert.equal(registry.tokenServer!.requests.at(-1)?.via, 'anonymous');
  });
});

describe('through an HTTP CONNECT proxy (squid with Basic auth), as the gateway is reached', () => {
  let registry: Registry;
  let squid: Squid;
  before(async () => {
    registry = await startRegistry({ auth: true });
    squid = await startSquid({ users: { corp: 'proxy-pass' } });
  });
  after(async () => {
    await squid?.stop();
    await registry?.stop();
  });

  async function credentialsVia(proxyVars: Record<string, string>): Promise<RegistryCredentials> {
    const dir = await mkdtemp(path.join(scratch, 'docker-proxy-'));
    const user = registry.credentials!;
    await writeFile(path.join(dir, 'config.json'), JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from(`${user.username}:${user.password}`).toString('base64') } } }));
    return loadRegistryCredentials({ DOCKER_CONFIG: dir, ...proxyVars });
  }

  const connects = async (): Promise<number> => (await squid.accessLog()).split('\n').filter((l) => l.includes(`CONNECT ${registry.host}`) && / TCP_TUNNEL\/200 /.test(l)).length;

  test('HTTP_PROXY names the proxy: every registry request goes through a CONNECT tunnel', async () => {
    const image = await registry.pushImage('proxied/app', 'base', { files: { 'p.txt': 'p\n' }, platform: 'linux/amd64' });
    const credentials = await credentialsVia({ HTTP_PROXY: squid.url('corp', 'proxy-pass') });
    const before = await connects();
    const { digest } = await pushImageIndex([`${registry.host}/proxied/app:1`], [{ platform: 'linux/amd64', digest: image.digest, mediaType: '', size: 0 }], credentials);
    assert.equal((await registry.request('/v2/proxied/app/manifests/1', { headers: { accept: OCI_INDEX } })).headers['docker-content-digest'], digest);
    // squid logs a tunnel when it closes; the client's requests (HEAD, PUT, their 401 retries) each had one.
    let after = await connects();
    for (let i = 0; i < 50 && after < before + 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      after = await connects();
    }
    assert.ok(after >= before + 2, `tunnels through squid: ${after - before}\n${await squid.accessLog()}`);
  });

  test('a proxy refusing the credentials is PROXY_AUTH naming the proxy; NO_PROXY sends the registry direct', async () => {
    const image = await registry.pushImage('proxied/other', 'base', { files: { 'o.txt': 'o\n' }, platform: 'linux/arm64' });
    const manifests = [{ platform: 'linux/arm64' as const, digest: image.digest, mediaType: '', size: 0 }];
    const refused = await refusal(pushImageIndex([`${registry.host}/proxied/other:1`], manifests, await credentialsVia({ HTTP_PROXY: squid.url('corp', 'wrong') })));
    assert.equal(refused.code, 'PROXY_AUTH');
    assert.match(refused.message, new RegExp(`127\\.0\\.0\\.1:${squid.port}`));
    const direct = await credentialsVia({ HTTP_PROXY: squid.url('corp', 'wrong'), NO_PROXY: '127.0.0.1' });
    await pushImageIndex([`${registry.host}/proxied/other:1`], manifests, direct);
    assert.equal((await registry.request('/v2/proxied/other/manifests/1', { headers: { accept: OCI_INDEX } })).status, 200);
  });
});

describe('a registry serving HTTPS', () => {
  let registry: Registry;
  let squid: Squid;
  before(async () => {
    registry = await startRegistry({ auth: true, tls: true });
    squid = await startSquid();
  });
  after(async () => {
    await squid?.stop();
    await registry?.stop();
  });

  test('TLS end to end, directly and inside the proxy\'s CONNECT tunnel; an untrusted certificate is a clear error', async () => {
    assert.match(registry.url, /^https:/);
    const image = await registry.pushImage('secure/app', 'base', { files: { 's.txt': 's\n' }, platform: 'linux/amd64' });
    const credentials = await credentialsFile({ [registry.host]: registry.credentials! });

    const direct = new RegistryClient(registry.host, credentials, { insecure: false, ca: registry.caPem! });
    assert.equal(direct.baseUrl, `https://${registry.host}`);
    assert.equal((await direct.getManifest('secure/app', 'base')).descriptor.digest, image.digest);
    direct.close();

    const viaProxy = loadRegistryCredentials({ DOCKER_CONFIG: path.dirname(credentials.configFile!), HTTPS_PROXY: squid.url() });
    const tunnelled = new RegistryClient(registry.host, viaProxy, { insecure: false, ca: registry.caPem! });
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: image.digest, size: image.size, platform: { architecture: 'amd64', os: 'linux' } }] }));
    const stored = await tunnelled.putManifest('secure/app', '1', OCI_INDEX, index);
    tunnelled.close();
    assert.equal((await registry.request('/v2/secure/app/manifests/1', { headers: { accept: OCI_INDEX } })).headers['docker-content-digest'], stored.digest);
    let log = '';
    for (let i = 0; i < 50 && !log.includes(`CONNECT ${registry.host}`); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      log = await squid.accessLog();
    }
    assert.match(log, new RegExp(`TCP_TUNNEL/200 .*CONNECT ${registry.host.replaceAll('.', '\\.')}`));

    const untrusting = new RegistryClient(registry.host, credentials, { insecure: false });
    const err = await refusal(untrusting.getManifest('secure/app', 'base'));
    untrusting.close();
    assert.equal(err.code, 'REGISTRY_FAILED');
    assert.match(err.message, new RegExp(`GET https://${registry.host.replaceAll('.', '\\.')}/v2/secure/app/manifests/base: .*(certificate|self.signed|issuer)`, 'i'));
  });
});
