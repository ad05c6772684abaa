// The gateway and agent images. hadolint is not packaged for Debian 12 or npm, and dockerd cannot
// build these here (their base image comes from Docker Hub, which this machine cannot reach), so
// they are judged by dockerfile-utils' linter (the Dockerfile language server's) plus the rules
// below, read from the parsed instructions; the healthcheck scripts are run for real.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { validate } from 'dockerfile-utils';
import { NODE_FLAGS } from '@slipway/cli';
import { startStack, runCommand } from '../src/index.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const KINDS = ['gateway', 'agent'] as const;

interface Instruction {
  keyword: string;
  args: string;
  stage: number;
}

// Instructions with continuation lines joined, comments dropped; stage counts FROMs.
function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  let pending = '';
  for (const raw of text.split('\n')) {
    if (pending === '' && /^\s*#/.test(raw)) continue;
    pending += raw.replace(/\\$/, ' ');
    if (raw.endsWith('\\')) continue;
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(pending);
    pending = '';
    if (!m) continue;
    const keyword = m[1]!.toUpperCase();
    if (keyword === 'FROM') stage++;
    out.push({ keyword, args: m[2]!.trim(), stage });
  }
  return out;
}

for (const kind of KINDS) {
  test(`Dockerfile.${kind}: lints clean, multi-stage, pinned base, non-root with a health check`, () => {
    const text = fs.readFileSync(path.join(REPO_ROOT, `deploy/docker/Dockerfile.${kind}`), 'utf8');
    assert.deepEqual(validate(text).map((d) => `${d.range.start.line + 1}: ${d.message}`), []);
    const all = instructions(text);
    const froms = all.filter((i) => i.keyword === 'FROM');
    assert.ok(froms.length >= 2, 'not multi-stage');
    const nodeImage = /^ARG NODE_IMAGE=(\S+)$/m.exec(text)?.[1] ?? '';
    assert.match(nodeImage, /^node:\d+\.\d+\.\d+-[a-z]+-slim@sha256:[0-9a-f]{64}$/, 'the base image is not pinned by version and digest');
    for (const from of froms) assert.doesNotMatch(from.args, /:latest\b/);
    assert.ok(!all.some((i) => i.keyword === 'ADD' && /https?:\/\//.test(i.args)), 'ADD of a URL');

    // The runtime image: the stage the file ends in (FROM <runtime stage>).
    const finalFrom = froms.at(-1)!.args.split(/\s+/)[0]!;
    const runtimeStage = froms.findIndex((f) => f.args.split(/\s+/).at(-1) === finalFrom);
    assert.ok(runtimeStage >= 0, `the final FROM ${finalFrom} names no stage`);
    const runtime = all.filter((i) => i.stage === runtimeStage);
    const user = runtime.filter((i) => i.keyword === 'USER').at(-1)?.args;
    assert.ok(user && !/^(root|0)(:|$)/.test(user), `runs as ${user ?? 'root'}`);
    const health = runtime.find((i) => i.keyword === 'HEALTHCHECK');
    assert.ok(health && !/NONE/.test(health.args), 'no HEALTHCHECK');
    const script = /"(deploy\/docker\/healthcheck-[a-z]+\.mjs)"/.exec(health.args)?.[1];
    assert.ok(script && runtime.some((i) => i.keyword === 'COPY' && i.args.includes(script)), 'the health check script is not copied into the image');
    const entrypoint = runtime.filter((i) => i.keyword === 'ENTRYPOINT').at(-1)?.args;
    assert.deepEqual(entrypoint && JSON.parse(entrypoint), ['node', ...NODE_FLAGS, '--import', 'tsx', `${kind}/src/main.ts`]);
    // The VM bundle is the runtime image's files.
    assert.match(text, new RegExp(`FROM scratch AS ${kind}-bundle\\nCOPY --from=${kind} /app /`));
  });
}

test("the gateway image's health check passes against a live gateway and fails without one", async () => {
  const stack = await startStack();
  const script = path.join(REPO_ROOT, 'deploy/docker/healthcheck-gateway.mjs');
  try {
    const ok = await runCommand('node', [script], { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', SLIPWAY_LISTEN: `127.0.0.1:${stack.port}` }, allowFailure: true, timeoutMs: 30_000 });
    assert.equal(ok.code, 0, ok.stderr);
  } finally {
    await stack.close();
  }
  const down = await runCommand('node', [script], { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', SLIPWAY_LISTEN: `127.0.0.1:${stack.port}` }, allowFailure: true, timeoutMs: 30_000 });
  assert.equal(down.code, 1);
});
