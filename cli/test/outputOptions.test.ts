import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Platform } from '@slipway/proto';
import { parseCommandLine } from '../src/commandLine.js';
import { buildCommandSpec } from '../src/build/buildCommand.js';
import { outputOf } from '../src/build/outputOptions.js';
import { exporterFor } from '../src/build/outputExporter.js';
import { capabilitiesOf, checkBuilderCan, type BuilderCapabilities } from '../src/build/builderCapabilities.js';
import { imageIdOf, metadataOf } from '../src/build/buildMetadata.js';
import { SessionServer } from '../src/build/sessionServer.js';
import { PreflightBarrier } from '../src/build/preflightBarrier.js';

function parse(argv: string[], platforms: Platform[] = ['linux/amd64'], env: Record<string, string> = {}) {
  const problems: string[] = [];
  const line = parseCommandLine(buildCommandSpec(), [...argv, '.'], problems);
  const output = outputOf(line, platforms, 'linux/amd64', env, problems);
  return { output, problems };
}

const MODERN: BuilderCapabilities = { exporters: ['local', 'tar', 'image', 'docker', 'oci'], description: 'BuildKit (snapshotter overlayfs)' };
const CLASSIC: BuilderCapabilities = { exporters: ['local', 'tar', 'moby'], description: "Docker Engine's BuildKit with the classic image store (worker moby)" };

test('--push is type=image,push=true named by the tags; type=registry too', () => {
  const { output, problems } = parse(['--push', '-t', '127.0.0.1:5000/app:1', '-t', '127.0.0.1:5000/app:latest']);
  assert.deepEqual(problems, []);
  assert.deepEqual(output, { type: 'image', names: ['127.0.0.1:5000/app:1', '127.0.0.1:5000/app:latest'], push: true, attrs: {} });
  const registry = parse(['--output', 'type=registry,name=r.example/x:2,oci-mediatypes=true']);
  assert.deepEqual(registry.problems, []);
  assert.deepEqual(registry.output, { type: 'image', names: ['r.example/x:2'], push: true, attrs: { 'oci-mediatypes': 'true' } });
  const image = parse(['--output', 'type=image,name=a:1,push=true', '-t', 'ignored:1']);
  assert.deepEqual(image.output, { type: 'image', names: ['a:1'], push: true, attrs: {} }, 'name= wins over the tags, as in buildx');
  const merged = parse(['--push', '--output', 'type=image', '-t', 'b:1']);
  assert.deepEqual(merged.problems, []);
  assert.deepEqual(merged.output, { type: 'image', names: ['b:1'], push: true, attrs: {} });
});

test('type=docker and type=oci: to a file; type=docker without dest and --load: into Docker at DOCKER_HOST', () => {
  assert.deepEqual(parse(['--output', 'type=docker,dest=/tmp/d.tar', '-t', 'app:1']).output, { type: 'docker', names: ['app:1'], dest: '/tmp/d.tar', attrs: {} });
  assert.deepEqual(parse(['-o', 'type=oci,dest=o.tar,name=x:1']).output, { type: 'oci', names: ['x:1'], dest: 'o.tar', attrs: {} });
  const load = parse(['--load', '-t', 'app:1']);
  assert.deepEqual(load.problems, []);
  assert.deepEqual(load.output, { type: 'docker', names: ['app:1'], load: { dockerHost: 'unix:///var/run/docker.sock', platform: 'linux/amd64' }, attrs: {} });
  const viaEnv = parse(['--output', 'type=docker', '-t', 'app:1'], ['linux/amd64'], { DOCKER_HOST: 'unix:///tmp/other.sock' });
  assert.deepEqual(viaEnv.output, { type: 'docker', names: ['app:1'], load: { dockerHost: 'unix:///tmp/other.sock', platform: 'linux/amd64' }, attrs: {} });
  // With several platforms only this machine's is loaded.
  const several = parse(['--load', '-t', 'app:1'], ['linux/arm64', 'linux/amd64']);
  assert.deepEqual(several.problems, []);
  assert.equal('load' in several.output && several.output.load.platform, 'linux/amd64');
  assert.match(parse(['--load', '-t', 'app:1'], ['linux/arm64', 'linux/arm64']).problems.join('\n'), /this machine's platform \(linux\/amd64\).*not among/);
  assert.equal(parse(['--load', '-t', 'a:1'], ['linux/arm64']).problems.length, 0, 'one platform is loaded whatever it is');
});

test('--metadata-file and --iidfile are carried with the output', () => {
  const { output, problems } = parse(['--push', '-t', 'r/a:1', '--metadata-file', 'm.json', '--iidfile', 'id.txt']);
  assert.deepEqual(problems, []);
  assert.equal(output.metadataFile, 'm.json');
  assert.equal(output.iidFile, 'id.txt');
  assert.match(parse(['-o', 'type=oci,dest=o.tar', '--iidfile', 'id'], ['linux/amd64', 'linux/arm64']).problems.join('\n'), /--iidfile holds one image ID/);
  assert.deepEqual(parse(['--push', '-t', 'r/a:1', '--iidfile', 'id'], ['linux/amd64', 'linux/arm64']).problems, []);
});

test('conflicts are refused with the reason, all at once', () => {
  const cases: [string[], RegExp, Platform[]?][] = [
    [['--push', '--output', 'type=local,dest=out', '-t', 'a:1'], /--push and --output type=local cannot be used together/],
    [['--push', '--load', '-t', 'a:1'], /--push and --load cannot be used together/],
    [['--load', '--output', 'type=tar,dest=x.tar', '-t', 'a:1'], /--load and --output type=tar cannot be used together/],
    [['--load', '--output', 'type=docker,dest=x.tar', '-t', 'a:1'], /--load and --output type=docker,dest=FILE cannot be used together/],
    [['--push'], /--push needs a name to push to: give -t REF/],
    [['--output', 'type=image,push=true'], /needs a name to push to/],
    [['--output', 'type=image,push=maybe,name=a'], /push must be true or false; got 'maybe'/],
    [['--output', 'type=docker,dest=d.tar', '-t', 'a:1'], /type=docker holds one platform's image; got 2 platforms/, ['linux/amd64', 'linux/arm64']],
    [['--output', 'type=oci'], /type=oci needs dest=FILE/],
    [['--output', 'type=docker,dest=-'], /stdout\) is not supported/],
    [['--output', 'type=tar'], /type=tar needs dest=PATH/],
    [['--output', 'type=image,name=a,colour=blue'], /unknown option\(s\) colour/],
    [['--output', 'type=cacheonly'], /type=cacheonly is not supported; expected local, tar, image, registry, docker or oci/],
    [['-o', 'a', '-o', 'b'], /only one --output is supported; got 2/],
    [['--load'], /--load loads an image into Docker and needs a name/],
    [['--push', '-t', 'Bad Name:1'], /--push: invalid image name 'Bad Name:1'/],
  ];
  for (const [argv, expected, platforms] of cases) {
    const { problems } = parse(argv, platforms);
    assert.match(problems.join('\n'), expected, `${argv.join(' ')} → ${problems.join(' | ')}`);
  }
  const all = parse(['--push', '--load', '--output', 'type=oci', '--metadata-file', '']).problems;
  assert.ok(all.length >= 3, `every problem at once: ${all.join(' | ')}`);
  assert.match(parse(['--load', '-t', 'a'], ['linux/amd64'], { DOCKER_HOST: 'ssh://me@host' }).problems.join('\n'), /unix:\/\/ or tcp:\/\/.*ssh:\/\/me@host/);
});

test('exporter attributes: push, push by digest for several platforms, names, moby for a classic Docker Engine', () => {
  const server = new SessionServer(() => {});
  const single = exporterFor(parse(['--push', '-t', 'r/a:1', '-t', 'r/a:2']).output, { platform: 'linux/amd64', outputSub: '', capabilities: MODERN }, server);
  assert.equal(single.name, 'image');
  assert.deepEqual(single.attrs, { name: 'r/a:1,r/a:2', push: 'true' });
  const several = exporterFor(parse(['--push', '-t', '127.0.0.1:5000/a:1', '-t', '127.0.0.1:5000/a:2', '-t', 'b'], ['linux/amd64', 'linux/arm64']).output, { platform: 'linux/arm64', outputSub: 'linux_arm64/', capabilities: MODERN }, server);
  assert.deepEqual(several.attrs, { name: '127.0.0.1:5000/a,docker.io/library/b', push: 'true', 'push-by-digest': 'true', store: 'false' }, 'by digest: the repositories without tags');
  const docker = exporterFor(parse(['-o', 'type=docker,dest=d.tar,compression=zstd', '-t', 'a:1']).output, { platform: 'linux/amd64', outputSub: '', capabilities: MODERN }, server);
  assert.equal(docker.name, 'docker');
  assert.deepEqual(docker.attrs, { compression: 'zstd', name: 'a:1' });
  assert.ok(server.methods.includes('/moby.filesync.v1.FileSend/DiffCopy'), 'the tarball is received through FileSend');
  const oci = exporterFor(parse(['-o', 'type=oci,dest=/o/o.tar'], ['linux/amd64', 'linux/arm64']).output, { platform: 'linux/arm64', outputSub: 'linux_arm64/', capabilities: MODERN }, server);
  assert.equal(oci.name, 'oci');
  assert.equal(oci.delivered(), '/o/linux_arm64-o.tar');
  const loadOther = exporterFor(parse(['--load', '-t', 'a:1'], ['linux/amd64', 'linux/arm64']).output, { platform: 'linux/arm64', outputSub: 'linux_arm64/', capabilities: MODERN }, server);
  assert.equal(loadOther.name, '', 'the platform not loaded is built without an exporter');
  const moby = exporterFor(parse(['--output', 'type=image,name=a:1']).output, { platform: 'linux/amd64', outputSub: '', capabilities: CLASSIC }, server);
  assert.equal(moby.name, 'moby', 'an image without push goes into a classic Docker Engine\'s own store, as buildx does');
  const ENGINE: BuilderCapabilities = { ...MODERN, exporters: [...MODERN.exporters, 'moby'] };
  assert.equal(exporterFor(parse(['--output', 'type=image,name=a:1']).output, { platform: 'linux/amd64', outputSub: '', capabilities: ENGINE }, server).name, 'moby', 'and into a containerd-store Engine\'s');
  assert.equal(exporterFor(parse(['--output', 'type=image,name=a:1']).output, { platform: 'linux/amd64', outputSub: '', capabilities: MODERN }, server).name, 'image', 'buildkitd keeps it in its own store');
  assert.equal(exporterFor(parse(['--push', '-t', 'r/a:1']).output, { platform: 'linux/amd64', outputSub: '', capabilities: ENGINE }, server).name, 'image');
});

test('a classic Docker Engine\'s BuildKit refuses push, docker, oci and load by the exporter it lacks; modern BuildKit takes them', () => {
  const refused: [string[], RegExp][] = [
    [['--push', '-t', 'r/a:1'], /cannot do --push \(type=image,push=true\):.*no "image" exporter, so it cannot push/],
    [['-o', 'type=docker,dest=d.tar', '-t', 'a'], /cannot do --output type=docker:.*no "docker" exporter/],
    [['-o', 'type=oci,dest=o.tar'], /cannot do --output type=oci:.*no "oci" exporter/],
    [['--load', '-t', 'a'], /cannot do --load \(type=docker\):.*no "docker" exporter/],
  ];
  for (const [argv, expected] of refused) {
    const { output } = parse(argv);
    assert.throws(() => checkBuilderCan(output, CLASSIC, 'linux/amd64'), (err: Error) => expected.test(err.message) && /linux\/amd64 builder/.test(err.message), argv.join(' '));
    assert.doesNotThrow(() => checkBuilderCan(output, MODERN, 'linux/amd64'));
  }
  for (const argv of [['-o', 'type=local,dest=x'], ['-o', 'type=tar,dest=x.tar'], ['-o', 'type=image,name=a'], []]) assert.doesNotThrow(() => checkBuilderCan(parse(argv).output, CLASSIC, 'linux/amd64'));
});

test('the builder told apart by its workers (as dockerd 20.10, dockerd 26 with the containerd store and buildkitd answer ListWorkers)', () => {
  // dockerd 20.10: one worker, ID moby, no labels.
  assert.deepEqual(capabilitiesOf([{ ID: 'moby', Labels: {} }]).exporters, ['local', 'tar', 'moby']);
  // dockerd 26 with the containerd image store: BuildKit's containerd worker, with moby's own label.
  const engine26 = capabilitiesOf([
    {
      ID: '6sk2hjkuy3nxr88qr9y9mgbyi',
      Labels: {
        'org.mobyproject.buildkit.worker.executor': 'containerd',
        'org.mobyproject.buildkit.worker.moby.host-gateway-ip': '<nil>',
        'org.mobyproject.buildkit.worker.containerd.namespace': 'moby',
        'org.mobyproject.buildkit.worker.network': 'host',
        'org.mobyproject.buildkit.worker.snapshotter': 'overlayfs',
      },
    },
  ]);
  assert.deepEqual(engine26.exporters, ['local', 'tar', 'image', 'docker', 'oci', 'moby']);
  assert.match(engine26.description, /containerd image store \(snapshotter overlayfs\)/);
  // A newer Engine with the classic store labels its moby worker but names no snapshotter.
  assert.deepEqual(capabilitiesOf([{ ID: 'moby', Labels: { 'org.mobyproject.buildkit.worker.moby.host-gateway-ip': '172.17.0.1' } }]).exporters, ['local', 'tar', 'moby']);
  // buildkitd's OCI worker.
  assert.deepEqual(capabilitiesOf([{ ID: 'w1', Labels: { 'org.mobyproject.buildkit.worker.executor': 'oci', 'org.mobyproject.buildkit.worker.snapshotter': 'overlayfs' } }]).exporters, ['local', 'tar', 'image', 'docker', 'oci']);
});

test('metadata as buildx writes it: base64 JSON values embedded, others kept; the image ID is the config digest', () => {
  const descriptor = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: 'sha256:aa', size: 481 };
  const response = {
    'containerimage.digest': 'sha256:aa',
    'containerimage.config.digest': 'sha256:cc',
    'containerimage.descriptor': Buffer.from(JSON.stringify(descriptor)).toString('base64'),
    'image.name': 'r/a:1',
  };
  assert.deepEqual(metadataOf([{ platform: 'linux/amd64', exporterResponse: response }], undefined), { ...response, 'containerimage.descriptor': descriptor });
  assert.equal(imageIdOf([{ platform: 'linux/amd64', exporterResponse: response }], undefined, undefined), 'sha256:cc');
  const index = { names: ['r/a:1'], digest: 'sha256:ii', mediaType: 'application/vnd.oci.image.index.v1+json', size: 700 };
  const two = [{ platform: 'linux/amd64' as const, exporterResponse: response }, { platform: 'linux/arm64' as const, exporterResponse: { 'containerimage.digest': 'sha256:bb' } }];
  const meta = metadataOf(two, index);
  assert.equal(meta['containerimage.digest'], 'sha256:ii');
  assert.deepEqual(meta['containerimage.descriptor'], { mediaType: index.mediaType, digest: 'sha256:ii', size: 700 });
  assert.deepEqual(meta['linux/arm64'], { 'containerimage.digest': 'sha256:bb' });
  assert.equal(imageIdOf(two, index, undefined), 'sha256:ii');
  assert.equal(imageIdOf(two, undefined, 'linux/amd64'), 'sha256:cc', 'with --load, the image loaded');
});

test('the preflight barrier: every platform passes before any solve; one refusal stops all with that refusal', async () => {
  const ok = new PreflightBarrier(2);
  ok.pass();
  let released = false;
  void ok.all.then(() => (released = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(released, false, 'one of two platforms checked is not enough');
  ok.pass();
  await ok.all;
  const refused = new PreflightBarrier(3);
  refused.pass();
  const first = new Error('no docker exporter');
  refused.fail(first);
  refused.fail(new Error('a consequence'));
  await assert.rejects(refused.all, (err) => err === first);
  assert.equal(refused.firstFailure(new Error('mine')), first);
});
