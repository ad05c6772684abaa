import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dockerLocations, type DockerLocations } from '../src/dockerLocations.js';
import { installDockerSetup, uninstallDockerSetup } from '../src/dockerSetup.js';
import { buildxCurrentJson, buildxInstanceJson, dockerEndpointKey } from '../src/buildxStore.js';
import { withBuilderAlias, withoutBuilderAlias } from '../src/dockerCliConfig.js';
import { pluginInvocation } from '../src/dockerCliPlugin.js';

const program = { node: '/usr/bin/node', nodeFlags: ['--initial-old-space-size=64'], script: "/opt/it's slipway/bin/slipway.mjs" };

async function withDocker(run: (locations: DockerLocations) => void): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'slipway-docker-setup-'));
  try {
    run(dockerLocations({ DOCKER_CONFIG: path.join(dir, 'docker') }, path.join(dir, 'slipway'))!);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function install(locations: DockerLocations) {
  return installDockerSetup({ locations, platforms: ['linux/amd64', 'linux/arm64'], env: {}, program, driverOpts: { 'default-load': 'true' } });
}

test("buildx's files are Go's encoding of its structs: compact, fields in order, nil as null, <>& escaped", () => {
  assert.equal(
    buildxInstanceJson('slipway', [{ name: 'slipway-amd64', endpoint: 'unix:///a<b>&c.sock', platform: 'linux/amd64', driverOpts: { 'z-opt': '1', 'default-load': 'true' } }, { name: 'slipway-arm64', endpoint: 'unix:///b.sock', platform: 'linux/arm64', driverOpts: undefined }]),
    '{"Name":"slipway","Driver":"remote","Nodes":[' +
      '{"Name":"slipway-amd64","Endpoint":"unix:///a\\u003cb\\u003e\\u0026c.sock","Platforms":[{"architecture":"amd64","os":"linux"}],"DriverOpts":{"default-load":"true","z-opt":"1"},"Flags":null,"Files":null},' +
      '{"Name":"slipway-arm64","Endpoint":"unix:///b.sock","Platforms":[{"architecture":"arm64","os":"linux"}],"DriverOpts":null,"Flags":null,"Files":null}],"Dynamic":false}',
  );
  assert.equal(buildxCurrentJson('unix:///var/run/docker.sock', 'slipway'), '{"Key":"unix:///var/run/docker.sock","Name":"slipway","Global":true}');
  assert.equal(dockerEndpointKey({}, undefined), 'unix:///var/run/docker.sock');
  assert.equal(dockerEndpointKey({ DOCKER_HOST: 'tcp://h:2375' }, 'default'), 'tcp://h:2375');
  assert.equal(dockerEndpointKey({}, 'remote-ctx'), 'remote-ctx');
  assert.equal(dockerEndpointKey({ DOCKER_CONTEXT: 'ci' }, 'remote-ctx'), 'ci');
});

test('the builder alias is added and taken out without touching the rest of config.json', () => {
  const original = '{"auths":{"r.example":{"auth":"eA=="}},"aliases":{"compose":"compose"}}';
  const added = withBuilderAlias(original, 'config.json')!;
  assert.equal(added, '{\n\t"auths": {\n\t\t"r.example": {\n\t\t\t"auth": "eA=="\n\t\t}\n\t},\n\t"aliases": {\n\t\t"compose": "compose",\n\t\t"builder": "buildx"\n\t}\n}');
  assert.equal(withBuilderAlias(added, 'config.json'), undefined, 'already set: nothing to write');
  assert.deepEqual(JSON.parse(withoutBuilderAlias(added, 'config.json')!), JSON.parse(original));
  assert.equal(withoutBuilderAlias(original, 'config.json'), undefined);
  assert.deepEqual(JSON.parse(withoutBuilderAlias(withBuilderAlias(undefined, 'c')!, 'c')!), {}, 'no empty aliases left behind');
  assert.throws(() => withBuilderAlias('{not json', 'config.json'), /config\.json is not valid JSON/);
});

test('install into an empty DOCKER_CONFIG, twice, then uninstall leaves nothing, not even the folders', () =>
  withDocker((locations) => {
    assert.deepEqual(install(locations).map((c) => c.what), ['created', 'created', 'created', 'created']);
    assert.deepEqual(install(locations).map((c) => c.what), ['unchanged', 'unchanged', 'unchanged', 'unchanged']);
    const script = fs.readFileSync(locations.pluginFile, 'utf8');
    assert.match(script, /^#!\/bin\/sh\n/);
    assert.ok(script.includes(`exec '/usr/bin/node' '--initial-old-space-size=64' '/opt/it'\\''s slipway/bin/slipway.mjs' docker-cli-plugin "$@"`), script);
    uninstallDockerSetup(locations);
    assert.equal(fs.existsSync(locations.dockerConfigDir), false);
    assert.equal(uninstallDockerSetup(locations), undefined, 'nothing recorded any more');
  }));

test('files changed since configure-docker: only Slipway\'s part is taken out, another selection is left be', () =>
  withDocker((locations) => {
    fs.mkdirSync(locations.dockerConfigDir, { recursive: true });
    fs.writeFileSync(locations.configJson, '{"credsStore":"pass"}\n');
    install(locations);
    // The user logs in (the Docker CLI rewrites config.json) and picks another builder.
    const config = JSON.parse(fs.readFileSync(locations.configJson, 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(locations.configJson, JSON.stringify({ ...config, auths: { 'r.example': {} } }, null, '\t'));
    fs.writeFileSync(locations.currentFile, '{"Key":"k","Name":"other","Global":true}');
    fs.mkdirSync(path.join(locations.buildxDir, 'activity'), { recursive: true });
    fs.writeFileSync(path.join(locations.buildxDir, 'activity', 'slipway'), '2026-01-01T00:00:00Z');
    const changes = uninstallDockerSetup(locations)!;
    assert.deepEqual(JSON.parse(fs.readFileSync(locations.configJson, 'utf8')), { credsStore: 'pass', auths: { 'r.example': {} } });
    assert.equal(fs.readFileSync(locations.currentFile, 'utf8'), '{"Key":"k","Name":"other","Global":true}');
    assert.ok(changes.some((c) => c.path === locations.currentFile && c.what === 'left as changed since'));
    assert.ok(changes.some((c) => c.path === locations.configJson && c.what === 'slipway part removed'));
    assert.equal(fs.existsSync(locations.instanceFile), false);
    assert.equal(fs.existsSync(path.join(locations.buildxDir, 'activity', 'slipway')), false, "buildx's record of our builder goes with it");
  }));

test('the plugin is asked for its metadata, for a build, or for any slipway command', () => {
  assert.deepEqual(pluginInvocation(['docker-cli-plugin-metadata']), { kind: 'metadata' });
  assert.deepEqual(pluginInvocation(['slipway', 'build', '-t', 'x', '.']), { kind: 'build', args: ['-t', 'x', '.'] });
  assert.deepEqual(pluginInvocation(['slipway', 'doctor', '--json']), { kind: 'slipway', argv: ['doctor', '--json'] });
  assert.deepEqual(pluginInvocation(['slipway']), { kind: 'slipway', argv: [] });
});
