import assert from 'node:assert/strict';
import { access, constants, readFile, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  BUSYBOX_PATH,
  DEFAULT_DOCKERFILE,
  HarnessError,
  buildxUnavailableReason,
  makeBusyboxContext,
  prepareBuildx,
  redisCommand,
  runCommand,
  spawnManaged,
  startRedis,
  tempDir,
  type TempDir,
} from '../src/index.js';

function connectRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.on('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

describe('e2e harness', () => {
  let scratch: TempDir;
  before(async () => {
    scratch = await tempDir('harness-test');
  });
  after(async () => {
    await scratch.remove();
  });

  describe('makeBusyboxContext', () => {
    it('writes busybox, the default Dockerfile and extra files', async () => {
      const ctx = await makeBusyboxContext(path.join(scratch.path, 'ctx-default'), {
        files: { 'sub/dir/data.txt': 'payload\n' },
      });
      assert.equal(await readFile(ctx.dockerfilePath, 'utf8'), DEFAULT_DOCKERFILE);
      assert.match(DEFAULT_DOCKERFILE, /^FROM scratch$/m);
      const copied = await stat(ctx.busyboxPath);
      assert.equal(copied.size, (await stat(BUSYBOX_PATH)).size);
      await access(ctx.busyboxPath, constants.X_OK);
      assert.equal(await readFile(path.join(ctx.dir, 'sub/dir/data.txt'), 'utf8'), 'payload\n');
    });

    it('uses a given Dockerfile and rejects paths outside the context', async () => {
      const dockerfile = 'FROM scratch\nCOPY busybox /bin/busybox\n';
      const ctx = await makeBusyboxContext(path.join(scratch.path, 'ctx-custom'), { dockerfile });
      assert.equal(await readFile(ctx.dockerfilePath, 'utf8'), dockerfile);
      await assert.rejects(
        makeBusyboxContext(path.join(scratch.path, 'ctx-escape'), { files: { '../outside.txt': 'x' } }),
        (err: unknown) => err instanceof HarnessError && err.code === 'INVALID_ARGUMENT',
      );
    });

    it('copies a busybox that runs on its own', async () => {
      const ctx = await makeBusyboxContext(path.join(scratch.path, 'ctx-run'));
      const r = await runCommand(ctx.busyboxPath, ['echo', 'hello from busybox']);
      assert.equal(r.stdout, 'hello from busybox\n');
    });
  });

  describe('processes', () => {
    it('waits for output, then stops the process with a signal', async () => {
      const p = spawnManaged(BUSYBOX_PATH, ['sh', '-c', 'echo "ready on port 1234"; exec /bin/busybox sleep 600']);
      const m = await p.waitForOutput(/ready on port (\d+)/);
      assert.equal(m[1], '1234');
      const status = await p.stop('SIGTERM');
      assert.equal(status.signal, 'SIGTERM');
      assert.equal(await p.stop(), status, 'stop() is idempotent');
    });

    it('rejects a wait when the process exits without the output, with that output in the error', async () => {
      const p = spawnManaged(BUSYBOX_PATH, ['sh', '-c', 'echo "something else"; exit 3']);
      await assert.rejects(p.waitForOutput(/never printed/), (err: unknown) => {
        assert.ok(err instanceof HarnessError);
        assert.equal(err.code, 'PROCESS_EXITED');
        assert.match(err.message, /something else/);
        return true;
      });
      assert.equal((await p.exited).code, 3);
    });

    it('keeps only a bounded tail of the output', async () => {
      const p = spawnManaged(BUSYBOX_PATH, ['sh', '-c', 'for i in $(/bin/busybox seq 1 2000); do echo "line $i"; done'], {
        maxOutputBytes: 1024,
      });
      await p.exited;
      await p.stop();
      const out = p.output();
      assert.match(out, /line 2000$/);
      assert.doesNotMatch(out, /^line 1$/m);
      assert.ok(out.length < 1200, `expected at most about 1 KiB kept, got ${out.length} characters`);
    });

    it('reports a program that cannot be started', async () => {
      const p = spawnManaged('/nonexistent/program', []);
      await assert.rejects(
        p.waitForOutput(/x/),
        (err: unknown) => err instanceof HarnessError && err.code === 'SPAWN_FAILED',
      );
    });

    it('runCommand rejects a failing command with its output', async () => {
      await assert.rejects(
        runCommand(BUSYBOX_PATH, ['sh', '-c', 'echo out-text; echo err-text >&2; exit 7']),
        (err: unknown) => {
          assert.ok(err instanceof HarnessError);
          assert.equal(err.code, 'COMMAND_FAILED');
          assert.match(err.message, /exited with code 7/);
          assert.match(err.message, /out-text/);
          assert.match(err.message, /err-text/);
          return true;
        },
      );
    });
  });

  describe('startRedis', () => {
    it('starts redis-server that answers PING and keeps data, and stops it', async () => {
      const redis = await startRedis();
      try {
        assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
        assert.equal(await redisCommand(redis.port, ['PING']), 'PONG');
        assert.equal(await redisCommand(redis.port, ['SET', 'slipway:k', 'v1']), 'OK');
        assert.equal(await redisCommand(redis.port, ['GET', 'slipway:k']), 'v1');
        assert.equal(await redisCommand(redis.port, ['GET', 'slipway:missing']), null);
        assert.deepEqual(await redisCommand(redis.port, ['MGET', 'slipway:k', 'slipway:missing']), ['v1', null]);
        await assert.rejects(
          redisCommand(redis.port, ['NOSUCHCOMMAND']),
          (err: unknown) => err instanceof HarnessError && err.code === 'PROTOCOL' && /unknown command/i.test(err.message),
        );
      } finally {
        await redis.stop();
      }
      assert.equal(await connectRefused(redis.port), true, 'redis no longer listens after stop()');
    });
  });

  describe('buildx', () => {
    const unavailable = buildxUnavailableReason();
    it('runs the buildx plugin through the docker CLI', { skip: unavailable ?? false }, async () => {
      const bx = await prepareBuildx(path.join(scratch.path, 'buildx'));
      assert.equal(bx.env.DOCKER_CONFIG, bx.dockerConfig);
      const r = await bx.run(['buildx', 'version']);
      assert.match(r.stdout, /github\.com\/docker\/buildx/);
      await assert.rejects(
        bx.run(['buildx', 'inspect', 'no-such-builder']),
        (err: unknown) =>
          err instanceof HarnessError && err.code === 'COMMAND_FAILED' && /no-such-builder/.test(err.message),
      );
    });
  });
});
