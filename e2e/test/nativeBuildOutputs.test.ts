// `slipway build`'s image outputs through the gateway and an agent in dockerd mode: docker and
// oci tarballs checked blob by blob, a push to a real docker-registry fetched back, --load into a
// second dockerd where the image runs, --metadata-file and --iidfile checked against what arrived;
// and dockerd 20.10's BuildKit refusing push and docker outputs before any build starts.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startDockerd, startStack, startRegistry, makeBusyboxContext, runCommand, tempDir, dockerCliPath, SLIPWAY_BIN, type Dockerd, type Registry, type SlipwayStack, type TempDir, slipwayClientEnv } from '@slipway/e2e';

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Unpacks an OCI layout tarball and checks every blob's content against its name; returns the layout's folder. */
async function unpackLayout(tarFile: string, into: string): Promise<{ dir: string; index: { manifests: Descriptor[] }; blob: (d: Descriptor) => Promise<Buffer> }> {
  await fs.mkdir(into, { recursive: true });
  await runCommand('tar', ['-xf', tarFile, '-C', into]);
  assert.deepEqual(JSON.parse(await fs.readFile(path.join(into, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
  const blobs = await fs.readdir(path.join(into, 'blobs', 'sha256'));
  assert.ok(blobs.length >= 3, `an index or manifest, a config and a layer at least: ${blobs.join(' ')}`);
  for (const name of blobs) assert.equal(sha256(await fs.readFile(path.join(into, 'blobs', 'sha256', name))), `sha256:${name}`, `blob ${name} holds what its digest says`);
  const index = JSON.parse(await fs.readFile(path.join(into, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
  const blob = async (d: Descriptor): Promise<Buffer> => {
    const data = await fs.readFile(path.join(into, 'blobs', ...d.digest.split(':')));
    assert.equal(data.length, d.size, `${d.digest}'s size is the descriptor's`);
    return data;
  };
  return { dir: into, index, blob };
}

/** Follows index → (index →) manifest and checks each descriptor's blob is there; returns the image manifest's descriptor and body. */
async function imageManifestOf(layout: Awaited<ReturnType<typeof unpackLayout>>): Promise<{ descriptor: Descriptor; manifest: { config: Descriptor; layers: Descriptor[] } }> {
  assert.equal(layout.index.manifests.length, 1, JSON.stringify(layout.index));
  let descriptor = layout.index.manifests[0]!;
  let body = JSON.parse((await layout.blob(descriptor)).toString()) as { manifests?: Descriptor[]; config: Descriptor; layers: Descriptor[] };
  if (body.manifests) {
    descriptor = body.manifests[0]!;
    body = JSON.parse((await layout.blob(descriptor)).toString()) as typeof body;
  }
  await layout.blob(body.config);
  for (const layer of body.layers) await layout.blob(layer);
  return { descriptor, manifest: body };
}

describe('slipway build outputs against dockerd 26 (containerd image store)', () => {
  let dockerd: Dockerd;
  let target: Dockerd | undefined;
  let stack: SlipwayStack;
  let registry: Registry;
  let scratch: TempDir;
  let env: NodeJS.ProcessEnv;
  let contextDir: string;

  before(async () => {
    scratch = await tempDir('native-outputs');
    // No RUN steps here, so neither daemon needs docker0 (other tests may hold it).
    dockerd = await startDockerd({ flavor: '26', bridge: 'none' });
    registry = await startRegistry();
    stack = await startStack();
    await stack.startAgent({ agentId: 'outputs-amd64', platform: 'linux/amd64', upstream: `dockerd:unix://${dockerd.socketPath}` });
    // The arm64 agent fronts the same dockerd: what is checked is the routing per platform and the
    // index over both pushes (no RUN step, so no emulation is needed).
    await stack.startAgent({ agentId: 'outputs-arm64', platform: 'linux/arm64', upstream: `dockerd:unix://${dockerd.socketPath}` });
    env = await slipwayClientEnv(stack, scratch.path);
    const context = await makeBusyboxContext(path.join(scratch.path, 'ctx'), {
      dockerfile: ['FROM scratch', 'COPY busybox /bin/busybox', 'COPY hello.txt /hello.txt', 'CMD ["/bin/busybox", "cat", "/hello.txt"]', ''].join('\n'),
      files: { 'hello.txt': `hello from slipway ${Date.now()}\n` },
    });
    contextDir = context.dir;
  });
  after(async () => {
    await stack?.close();
    await target?.stop();
    await dockerd?.stop();
    await registry?.stop();
    await scratch?.remove();
  });

  const slipwayBuild = (args: string[], extraEnv: Record<string, string> = {}) =>
    runCommand(process.execPath, [SLIPWAY_BIN, 'build', '--platform', 'linux/amd64', '--progress=plain', ...args], { env: { ...env, ...extraEnv }, allowFailure: true, timeoutMs: 180_000 });

  test('type=oci: the tarball is an OCI layout whose blobs match their digests; --metadata-file and --iidfile name its image', async () => {
    const tarFile = path.join(scratch.path, 'image-oci.tar');
    const metadataFile = path.join(scratch.path, 'oci-metadata.json');
    const iidFile = path.join(scratch.path, 'oci-iid');
    const result = await slipwayBuild(['--output', `type=oci,dest=${tarFile}`, '-t', 'example.test/app:oci', '--metadata-file', metadataFile, '--iidfile', iidFile, contextDir]);
    assert.equal(result.code, 0, result.stderr);
    const layout = await unpackLayout(tarFile, path.join(scratch.path, 'oci-unpacked'));
    const { descriptor, manifest } = await imageManifestOf(layout);
    // The -t name reaches the exporter: the layout names its image by it.
    assert.equal(layout.index.manifests[0]!.annotations?.['io.containerd.image.name'], 'example.test/app:oci', JSON.stringify(layout.index));
    assert.equal(layout.index.manifests[0]!.annotations?.['org.opencontainers.image.ref.name'], 'oci');
    const metadata = JSON.parse(await fs.readFile(metadataFile, 'utf8')) as Record<string, unknown>;
    assert.equal(metadata['containerimage.digest'], layout.index.manifests[0]!.digest, 'the metadata names the image in the tarball');
    assert.deepEqual((metadata['containerimage.descriptor'] as Descriptor).digest, layout.index.manifests[0]!.digest);
    assert.equal(await fs.readFile(iidFile, 'utf8'), manifest.config.digest, 'the image ID is its config digest');
    assert.match(result.stderr, new RegExp(`built ${layout.index.manifests[0]!.digest} → ${tarFile.replace(/[.]/g, '\\.')}`));
    assert.ok(descriptor.mediaType.includes('manifest'), descriptor.mediaType);
    // The file the Dockerfile copied is in a layer.
    const layerTar = path.join(scratch.path, 'oci-layer.tar');
    const layers = await Promise.all(manifest.layers.map((l) => layout.blob(l)));
    await fs.writeFile(layerTar, Buffer.concat(layers.slice(-1)));
    const listing = await runCommand('tar', ['-tzf', layerTar]);
    assert.match(listing.stdout, /hello\.txt/);
  });

  test('type=docker: the tarball has docker load\'s manifest.json and an OCI index; blobs match their digests', async () => {
    const tarFile = path.join(scratch.path, 'image-docker.tar');
    const iidFile = path.join(scratch.path, 'docker-iid');
    const result = await slipwayBuild(['--output', `type=docker,dest=${tarFile}`, '-t', 'app:docker', '--iidfile', iidFile, contextDir]);
    assert.equal(result.code, 0, result.stderr);
    const layout = await unpackLayout(tarFile, path.join(scratch.path, 'docker-unpacked'));
    const { manifest } = await imageManifestOf(layout);
    const saved = JSON.parse(await fs.readFile(path.join(layout.dir, 'manifest.json'), 'utf8')) as { Config: string; RepoTags: string[]; Layers: string[] }[];
    assert.equal(saved.length, 1);
    assert.deepEqual(saved[0]!.RepoTags, ['app:docker']);
    assert.equal(saved[0]!.Config, `blobs/sha256/${manifest.config.digest.slice('sha256:'.length)}`);
    for (const layer of saved[0]!.Layers) await fs.access(path.join(layout.dir, layer));
    assert.equal(await fs.readFile(iidFile, 'utf8'), manifest.config.digest);
  });

  test('--push -t 127.0.0.1:PORT/app:1: the registry holds the manifest slipway reported', async () => {
    const ref = `${registry.host}/app:1`;
    const metadataFile = path.join(scratch.path, 'push-metadata.json');
    const iidFile = path.join(scratch.path, 'push-iid');
    const result = await slipwayBuild(['--push', '-t', ref, '--metadata-file', metadataFile, '--iidfile', iidFile, contextDir]);
    assert.equal(result.code, 0, result.stderr);
    const answer = await registry.request('/v2/app/manifests/1', { headers: { accept: MANIFEST_ACCEPT } });
    assert.equal(answer.status, 200, answer.body.toString());
    const digest = sha256(answer.body);
    assert.equal(answer.headers['docker-content-digest'], digest);
    const metadata = JSON.parse(await fs.readFile(metadataFile, 'utf8')) as Record<string, unknown>;
    assert.equal(metadata['containerimage.digest'], digest, 'the digest slipway reports is the one the registry holds');
    assert.equal(metadata['image.name'], ref);
    const descriptor = metadata['containerimage.descriptor'] as Descriptor;
    assert.equal(descriptor.digest, digest);
    assert.equal(descriptor.size, answer.body.length);
    assert.equal(descriptor.mediaType, answer.headers['content-type']);
    assert.match(result.stderr, new RegExp(`built ${digest} → ${ref.replace(/[.]/g, '\\.')} pushed`));
    const manifest = JSON.parse(answer.body.toString()) as { config: Descriptor; layers: Descriptor[] };
    assert.equal(await fs.readFile(iidFile, 'utf8'), manifest.config.digest);
    for (const blob of [manifest.config, ...manifest.layers]) {
      const got = await registry.request(`/v2/app/blobs/${blob.digest}`);
      assert.equal(got.status, 200);
      assert.equal(sha256(got.body), blob.digest, `the registry's blob ${blob.digest} is intact`);
    }
  });

  test('--push for linux/amd64,linux/arm64: each builder pushes by digest, then one OCI index names both', async () => {
    const ref = `${registry.host}/multi:1`;
    const metadataFile = path.join(scratch.path, 'multi-metadata.json');
    const iidFile = path.join(scratch.path, 'multi-iid');
    const result = await runCommand(process.execPath, [SLIPWAY_BIN, 'build', '--platform', 'linux/amd64,linux/arm64', '--progress=plain', '--push', '-t', ref, '--metadata-file', metadataFile, '--iidfile', iidFile, contextDir], {
      env,
      allowFailure: true,
      timeoutMs: 180_000,
    });
    assert.equal(result.code, 0, result.stderr);
    const answer = await registry.request('/v2/multi/manifests/1', { headers: { accept: MANIFEST_ACCEPT } });
    assert.equal(answer.status, 200, answer.body.toString());
    assert.equal(answer.headers['content-type'], 'application/vnd.oci.image.index.v1+json');
    const indexDigest = sha256(answer.body);
    const index = JSON.parse(answer.body.toString()) as { mediaType: string; manifests: (Descriptor & { platform: { os: string; architecture: string } })[] };
    assert.deepEqual(index.manifests.map((m) => `${m.platform.os}/${m.platform.architecture}`).sort(), ['linux/amd64', 'linux/arm64']);
    const metadata = JSON.parse(await fs.readFile(metadataFile, 'utf8')) as Record<string, Record<string, unknown> | string>;
    assert.equal(metadata['containerimage.digest'], indexDigest, 'the metadata names the index the registry holds');
    assert.equal(await fs.readFile(iidFile, 'utf8'), indexDigest);
    assert.match(result.stderr, new RegExp(`pushed ${ref.replace(/[.]/g, '\\.')}: image index ${indexDigest}`));
    for (const entry of index.manifests) {
      const platform = `${entry.platform.os}/${entry.platform.architecture}`;
      const pushed = (metadata[platform] as Record<string, unknown>)['containerimage.digest'];
      assert.equal(entry.digest, pushed, `the index's ${platform} entry is what that platform's builder pushed`);
      const manifest = await registry.request(`/v2/multi/manifests/${entry.digest}`, { headers: { accept: MANIFEST_ACCEPT } });
      assert.equal(manifest.status, 200);
      assert.equal(sha256(manifest.body), entry.digest);
      assert.equal(manifest.body.length, entry.size);
      const config = JSON.parse((await registry.request(`/v2/multi/blobs/${(JSON.parse(manifest.body.toString()) as { config: Descriptor }).config.digest}`)).body.toString()) as { architecture: string };
      assert.equal(config.architecture, entry.platform.architecture, `the ${platform} entry's image is built for it`);
    }
    // Pushed by digest: no tag but the index's own.
    const tags = JSON.parse((await registry.request('/v2/multi/tags/list')).body.toString()) as { tags: string[] };
    assert.deepEqual(tags.tags, ['1']);
    const metrics = await stack.gateway.metrics.registry.render();
    for (const platform of ['linux/amd64', 'linux/arm64']) {
      assert.match(metrics, new RegExp(`slipway_placements_total\\{[^}]*platform="${platform}"[^}]*\\} [1-9]`), `a placement on a ${platform} builder`);
    }
  });

  test('type=image without push goes to the moby exporter: the image is named in the builder\'s Engine as Docker names it', async () => {
    const result = await slipwayBuild(['--output', 'type=image,name=app:stored', contextDir]);
    assert.equal(result.code, 0, result.stderr);
    const docker = dockerCliPath();
    assert.ok(docker);
    const inspect = await runCommand(docker, ['-H', dockerd.host, 'image', 'inspect', '--format', '{{.Id}}', 'app:stored']);
    assert.match(result.stderr, new RegExp(`built ${inspect.stdout.trim()} → app:stored into the builder's Docker Engine`));
  });

  test('--load streams the image into the Docker at DOCKER_HOST, where it runs; no Docker there fails before the build', async () => {
    const missing = await slipwayBuild(['--load', '-t', 'app:nowhere', contextDir], { DOCKER_HOST: `unix://${path.join(scratch.path, 'no-docker.sock')}` });
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /--load needs a Docker Engine at unix:\/\/.*no-docker\.sock/);
    assert.doesNotMatch(missing.stderr, /^#\d+ /m, 'no solve started');

    target = await startDockerd({ flavor: '26', bridge: 'none' });
    const result = await slipwayBuild(['--load', '-t', 'app:loaded', contextDir], { DOCKER_HOST: target.host });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, new RegExp(`loaded into Docker at ${target.host.replace(/[.]/g, '\\.')} as .*app:loaded`));
    const docker = dockerCliPath();
    assert.ok(docker, 'a docker CLI to run the loaded image');
    const run = await runCommand(docker, ['-H', target.host, 'run', '--rm', '--network', 'none', 'app:loaded'], { allowFailure: true, timeoutMs: 60_000 });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, await fs.readFile(path.join(contextDir, 'hello.txt'), 'utf8'));

    // Several platforms: both are built, only the one this machine runs is loaded (as buildx does).
    const iidFile = path.join(scratch.path, 'load-iid');
    const metadataFile = path.join(scratch.path, 'load-metadata.json');
    const both = await runCommand(process.execPath, [SLIPWAY_BIN, 'build', '--platform', 'linux/arm64,linux/amd64', '--progress=plain', '--load', '-t', 'app:both', '--iidfile', iidFile, '--metadata-file', metadataFile, contextDir], {
      env: { ...env, DOCKER_HOST: target.host },
      allowFailure: true,
      timeoutMs: 180_000,
    });
    assert.equal(both.code, 0, both.stderr);
    assert.match(both.stderr, /\[linux\/arm64\] built .*not loaded \(Docker here runs linux\/amd64\)/);
    assert.match(both.stderr, /\[linux\/amd64\] built .*loaded into Docker at .* as .*app:both/);
    const inspect = await runCommand(docker, ['-H', target.host, 'image', 'inspect', '--format', '{{.Architecture}} {{.Id}}', 'app:both']);
    const [architecture, id] = inspect.stdout.trim().split(' ');
    assert.equal(architecture, 'amd64');
    // Docker's containerd image store names an image by its manifest's digest; buildx's image ID is the config's.
    const metadata = JSON.parse(await fs.readFile(metadataFile, 'utf8')) as Record<string, Record<string, string>>;
    assert.equal(metadata['linux/amd64']!['containerimage.digest'], id, 'the amd64 image is the one Docker loaded');
    assert.notEqual(metadata['linux/arm64']!['containerimage.digest'], id);
    assert.equal(await fs.readFile(iidFile, 'utf8'), metadata['linux/amd64']!['containerimage.config.digest'], 'the image ID written is the loaded image\'s');
  });
});

describe('slipway build against dockerd 20.10: outputs its BuildKit cannot make are refused before the build', () => {
  let dockerd: Dockerd;
  let stack: SlipwayStack;
  let scratch: TempDir;
  let env: NodeJS.ProcessEnv;
  let contextDir: string;

  before(async () => {
    scratch = await tempDir('native-outputs-old');
    dockerd = await startDockerd({ flavor: '20.10', bridge: 'none' });
    stack = await startStack();
    await stack.startAgent({ agentId: 'old-amd64', platform: 'linux/amd64', upstream: `dockerd:unix://${dockerd.socketPath}` });
    env = await slipwayClientEnv(stack, scratch.path);
    contextDir = (await makeBusyboxContext(path.join(scratch.path, 'ctx'), { dockerfile: ['FROM scratch', 'COPY busybox /bin/busybox', ''].join('\n') })).dir;
  });
  after(async () => {
    await stack?.close();
    await dockerd?.stop();
    await scratch?.remove();
  });

  const slipwayBuild = (args: string[]) =>
    runCommand(process.execPath, [SLIPWAY_BIN, 'build', '--platform', 'linux/amd64', '--progress=plain', ...args], { env, allowFailure: true, timeoutMs: 180_000 });

  for (const [what, args, expected] of [
    ['--push', ['--push', '-t', '127.0.0.1:1/app:1'], /linux\/amd64 builder cannot do --push \(type=image,push=true\):.*no "image" exporter, so it cannot push/],
    ['type=docker', ['--output', 'type=docker,dest=/tmp/never.tar', '-t', 'app:1'], /linux\/amd64 builder cannot do --output type=docker:.*no "docker" exporter/],
    ['type=oci', ['--output', 'type=oci,dest=/tmp/never.tar'], /linux\/amd64 builder cannot do --output type=oci:.*no "oci" exporter/],
  ] as const) {
    test(`${what} fails before the build, naming the missing exporter`, async () => {
      const result = await slipwayBuild([...args, contextDir]);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, expected);
      assert.doesNotMatch(result.stderr, /^#\d+ /m, `no solve started:\n${result.stderr}`);
    });
  }

  test('--load fails before the build, naming the missing exporter (Docker itself answers)', async () => {
    const result = await runCommand(process.execPath, [SLIPWAY_BIN, 'build', '--platform', 'linux/amd64', '--progress=plain', '--load', '-t', 'app:1', contextDir], {
      env: { ...env, DOCKER_HOST: dockerd.host },
      allowFailure: true,
      timeoutMs: 180_000,
    });
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /linux\/amd64 builder cannot do --load \(type=docker\):.*no "docker" exporter/);
    assert.doesNotMatch(result.stderr, /^#\d+ /m);
  });

  test('type=image without push goes to the moby exporter: the image lands in that Engine, as with buildx\'s docker driver', async () => {
    const result = await slipwayBuild(['--output', 'type=image,name=app:in-engine', contextDir]);
    assert.equal(result.code, 0, result.stderr);
    const docker = dockerCliPath();
    assert.ok(docker);
    const inspect = await runCommand(docker, ['-H', dockerd.host, 'image', 'inspect', '--format', '{{.Id}}', 'app:in-engine'], { allowFailure: true });
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.match(result.stderr, /→ app:in-engine into the builder's Docker Engine/);
  });

  test('the same builder still makes what it can: type=tar', async () => {
    const tarFile = path.join(scratch.path, 'ok.tar');
    const result = await slipwayBuild(['--output', `type=tar,dest=${tarFile}`, contextDir]);
    assert.equal(result.code, 0, result.stderr);
    assert.match((await runCommand('tar', ['-tf', tarFile])).stdout, /bin\/busybox/);
  });
});
