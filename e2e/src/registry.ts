// A throwaway Docker registry (Debian's docker-registry, distribution 2.8) per test: loopback only,
// storage in a temp dir, optionally behind htpasswd Basic auth with generated users.
//
// Gotchas this works around:
// - distribution's htpasswd accepts bcrypt hashes only. `openssl passwd` has no bcrypt and neither
//   htpasswd (apache2-utils) nor a Python bcrypt can be counted on, but perl-base (Essential on
//   Debian) calls libcrypt's crypt(3), and libxcrypt does $2b$.
// - The registry cannot report a port it chose, so the port comes from a probe bind and start-up
//   is retried if another process takes it first.
// - A registry on 127.0.0.1 is plain HTTP: Docker and BuildKit treat loopback registries as insecure.
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { HarnessError } from './harnessError.js';
import { freePort } from './redisServer.js';
import { runCommand, spawnManaged, tempDir, type ManagedProcess } from './processes.js';
import { startTokenServer, type TokenServer } from './registryTokenServer.js';
import { makeInspectionCa, type InspectionCa } from './inspectionCa.js';

const DOCKER_REGISTRY = 'docker-registry';
const DEFAULT_START_TIMEOUT_MS = 20_000;
const POLL_MS = 50;
const BIND_ATTEMPTS = 3;
const REQUEST_TIMEOUT_MS = 10_000;
// bcrypt's own base64 alphabet; salts are 22 of its characters.
const BCRYPT_ALPHABET = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
// The 22nd salt character carries only 2 bits; these four leave the unused bits zero.
const BCRYPT_LAST_SALT_CHARS = '.Oeu';
// The lowest cost bcrypt allows: the registry checks the hash on every request, and these are throwaway users.
const BCRYPT_COST = 4;

export interface RegistryCredential {
  readonly username: string;
  readonly password: string;
  /** With token auth: an OAuth refresh token the token server takes for this user. */
  readonly identityToken?: string;
}

export interface RegistryResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface RegistryRequestOptions {
  readonly method?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Buffer | string;
  /** Credentials for Basic auth; defaults to the registry's own generated user (if it has one). */
  readonly auth?: RegistryCredential | null;
}

export interface Registry {
  /** 127.0.0.1:PORT, as it appears in image references. */
  readonly host: string;
  readonly port: number;
  /** http://127.0.0.1:PORT, or https:// with tls. */
  readonly url: string;
  /** With tls: the PEM of the CA that issued the registry's certificate (for 127.0.0.1). */
  readonly caPem: string | undefined;
  /** The first generated user when started with auth, else undefined. */
  readonly credentials: RegistryCredential | undefined;
  /** Every user the registry accepts (empty without auth). */
  readonly users: readonly RegistryCredential[];
  /** The registry's storage root (blobs and repositories as distribution lays them out). */
  readonly storageDir: string;
  /** With token auth: the token server the registry's 401s point to (its requests are recorded). */
  readonly tokenServer: TokenServer | undefined;
  readonly process: ManagedProcess;
  /**
   * One HTTP request to the registry (path like /v2/app/manifests/1), authorized as the first user:
   * Basic with htpasswd, a bearer token for the path's repository with token auth.
   */
  request(pathname: string, opts?: RegistryRequestOptions): Promise<RegistryResponse>;
  /**
   * Pushes a one-layer OCI image (a gzipped tar of `files`, mode 0755 for paths under bin/) for
   * `platform` as repository:tag, with the harness's own HTTP; returns its manifest's digest.
   */
  pushImage(repository: string, tag: string, image: PushImageOptions): Promise<{ digest: string; size: number }>;
  /** Stops the registry and removes its folder. Idempotent. */
  stop(): Promise<void>;
}

export interface PushImageOptions {
  /** Path in the image -> content, or { from: a file on this machine }. */
  readonly files: Readonly<Record<string, string | Buffer | { from: string }>>;
  readonly platform?: string;
}

export interface StartRegistryOptions {
  /**
   * Basic auth: true generates one user; a number generates that many; explicit users are taken as given.
   * Without it, the registry is anonymous.
   */
  readonly auth?: boolean | number | readonly RegistryCredential[];
  /**
   * Token authentication instead of htpasswd: the registry's 401 challenges are Bearer, naming a
   * token server the harness runs, which takes the users' passwords and identity tokens.
   */
  readonly tokenAuth?: boolean;
  /** Serve HTTPS with a certificate for 127.0.0.1 from a CA of the harness's own (see caPem). */
  readonly tls?: boolean;
  readonly startTimeoutMs?: number;
}

/** Whether docker-registry and perl (for bcrypt hashes) are on PATH. */
export async function registryAvailable(): Promise<boolean> {
  for (const [cmd, args] of [
    [DOCKER_REGISTRY, ['--version']],
    ['perl', ['-e', '1']],
  ] as const) {
    const result = await runCommand(cmd, args, { allowFailure: true, timeoutMs: 10_000 }).catch(() => null);
    if (result === null || result.code !== 0) return false;
  }
  return true;
}

/** Starts docker-registry on a free 127.0.0.1 port and waits until it answers GET /v2/. */
export async function startRegistry(opts: StartRegistryOptions = {}): Promise<Registry> {
  const timeoutMs = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const users = usersFor(opts.auth ?? (opts.tokenAuth ? true : undefined)).map((u) =>
    opts.tokenAuth ? { ...u, identityToken: u.identityToken ?? randomBytes(18).toString('base64url') } : u,
  );
  const dir = await tempDir('registry');
  let tokenServer: TokenServer | undefined;
  let ca: InspectionCa | undefined;
  try {
    let tlsFiles: { certificate: string; key: string } | undefined;
    if (opts.tls) {
      ca = await makeInspectionCa('Slipway Test Registry CA');
      const leaf = await ca.leafFor('127.0.0.1');
      tlsFiles = { certificate: path.join(dir.path, 'registry.crt'), key: path.join(dir.path, 'registry.key') };
      await writeFile(tlsFiles.certificate, leaf.certPem);
      await writeFile(tlsFiles.key, leaf.keyPem, { mode: 0o600 });
    }
    const caPem = ca?.certPem;
    const storageDir = path.join(dir.path, 'storage');
    let htpasswdFile: string | undefined;
    if (opts.tokenAuth) {
      tokenServer = await startTokenServer(dir.path, users.map((u) => ({ username: u.username, password: u.password, identityToken: u.identityToken! })));
    } else if (users.length > 0) {
      htpasswdFile = path.join(dir.path, 'htpasswd');
      const lines: string[] = [];
      for (const u of users) lines.push(`${u.username}:${await bcryptHash(u.password)}\n`);
      await writeFile(htpasswdFile, lines.join(''), { mode: 0o600 });
    }
    let lastError: unknown;
    for (let attempt = 1; attempt <= BIND_ATTEMPTS; attempt++) {
      const port = await freePort();
      const configFile = path.join(dir.path, `config-${port}.yml`);
      await writeFile(configFile, registryConfig(port, storageDir, htpasswdFile, tokenServer, tlsFiles));
      const proc = spawnManaged(DOCKER_REGISTRY, ['serve', configFile], { name: `registry:${port}`, cwd: dir.path });
      try {
        await waitForV2(port, proc, timeoutMs, caPem);
      } catch (err) {
        lastError = err;
        await proc.stop('SIGTERM');
        if (!/address already in use/i.test(proc.output())) throw err;
        continue;
      }
      let stopped: Promise<void> | undefined;
      const host = `127.0.0.1:${port}`;
      const authorize = authorizerFor(users[0], tokenServer);
      return {
        host,
        port,
        url: `${caPem === undefined ? 'http' : 'https'}://${host}`,
        caPem,
        credentials: users[0],
        users,
        storageDir,
        tokenServer,
        process: proc,
        request: (pathname, requestOpts = {}) =>
          registryRequest(port, pathname, { ...requestOpts, ca: caPem, authorization: requestOpts.auth === undefined ? authorize(pathname) : basicOf(requestOpts.auth) }),
        pushImage: (repository, tag, image) => pushImage(port, caPem, authorize, dir.path, repository, tag, image),
        stop() {
          stopped ??= (async () => {
            await proc.stop('SIGTERM');
            await tokenServer?.close();
            await ca?.remove();
            await dir.remove();
          })();
          return stopped;
        },
      };
    }
    throw lastError;
  } catch (err) {
    await tokenServer?.close();
    await ca?.remove();
    await dir.remove();
    throw err;
  }
}

function basicOf(auth: RegistryCredential | null): string | undefined {
  return auth ? `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}` : undefined;
}

/** The harness's own Authorization for a registry path: Basic, or a bearer token for the path's repository. */
function authorizerFor(user: RegistryCredential | undefined, tokenServer: TokenServer | undefined): (pathname: string) => string | undefined {
  if (user === undefined) return () => undefined;
  if (tokenServer === undefined) return () => basicOf(user);
  return (pathname) => {
    const repository = /^\/v2\/(.+?)\/(?:manifests|blobs|tags)\//.exec(pathname)?.[1];
    return `Bearer ${tokenServer.mint(user.username, repository ? [`repository:${repository}:pull,push`] : [])}`;
  };
}

function usersFor(auth: StartRegistryOptions['auth']): RegistryCredential[] {
  if (auth === undefined || auth === false) return [];
  if (Array.isArray(auth)) {
    for (const u of auth as readonly RegistryCredential[]) {
      if (!/^[A-Za-z0-9._-]+$/.test(u.username)) {
        throw new HarnessError('INVALID_ARGUMENT', `registry user names must match [A-Za-z0-9._-]+, got ${JSON.stringify(u.username)}`);
      }
    }
    return [...(auth as readonly RegistryCredential[])];
  }
  const count = auth === true ? 1 : (auth as number);
  if (!Number.isInteger(count) || count < 1) {
    throw new HarnessError('INVALID_ARGUMENT', `registry auth: expected true, a positive user count or users, got ${String(auth)}`);
  }
  return Array.from({ length: count }, (_, i) => ({
    username: `user${i + 1}-${randomBytes(3).toString('hex')}`,
    password: randomBytes(12).toString('base64url'),
  }));
}

function registryConfig(
  port: number,
  storageDir: string,
  htpasswdFile: string | undefined,
  tokenServer: TokenServer | undefined,
  tlsFiles: { certificate: string; key: string } | undefined,
): string {
  const lines = [
    'version: 0.1',
    'log:',
    '  level: info',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${JSON.stringify(storageDir)}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    // A random secret per run keeps the registry from warning and from sharing upload state.
    `  secret: ${randomBytes(16).toString('hex')}`,
    ...(tlsFiles ? ['  tls:', `    certificate: ${JSON.stringify(tlsFiles.certificate)}`, `    key: ${JSON.stringify(tlsFiles.key)}`] : []),
    'health:',
    '  storagedriver:',
    '    enabled: false',
  ];
  if (tokenServer !== undefined) {
    lines.push(
      'auth:',
      '  token:',
      `    realm: ${JSON.stringify(tokenServer.realm)}`,
      `    service: ${JSON.stringify(tokenServer.service)}`,
      `    issuer: ${JSON.stringify(tokenServer.issuer)}`,
      `    rootcertbundle: ${JSON.stringify(tokenServer.certFile)}`,
    );
  } else if (htpasswdFile !== undefined) {
    lines.push('auth:', '  htpasswd:', '    realm: slipway-test-registry', `    path: ${JSON.stringify(htpasswdFile)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** A bcrypt ($2b$) hash of `password` through perl's crypt(3) (libxcrypt). */
export async function bcryptHash(password: string): Promise<string> {
  const random = randomBytes(22);
  let salt = '';
  for (let i = 0; i < 21; i++) salt += BCRYPT_ALPHABET[(random[i] ?? 0) % 64];
  salt += BCRYPT_LAST_SALT_CHARS[(random[21] ?? 0) % 4];
  const setting = `$2b$${String(BCRYPT_COST).padStart(2, '0')}$${salt}`;
  // The password travels on stdin so no quoting can change it.
  const result = await runCommand('perl', ['-e', 'local $/; my $p = <STDIN>; print crypt($p, $ARGV[0]);', setting], {
    input: password,
    timeoutMs: 30_000,
  });
  const hash = result.stdout.trim();
  if (!hash.startsWith(setting) || hash.length !== 60) {
    throw new HarnessError(
      'NOT_AVAILABLE',
      `expected a 60-character bcrypt hash from perl's crypt() with setting ${setting}, got ${JSON.stringify(hash)} ` +
        '(this libc crypt has no bcrypt)',
    );
  }
  return hash;
}

async function waitForV2(port: number, proc: ManagedProcess, timeoutMs: number, ca: string | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    const exit = proc.exitStatus;
    if (exit) {
      throw new HarnessError(
        exit.error ? 'SPAWN_FAILED' : 'PROCESS_EXITED',
        `docker-registry on port ${port} ${exit.error ? `could not start: ${exit.error.message}` : `exited (code ${exit.code}, signal ${exit.signal})`} ` +
          `before answering GET /v2/.\n--- output ---\n${proc.output()}`,
      );
    }
    try {
      const res = await registryRequest(port, '/v2/', { timeoutMs: 1_000, ca });
      // 401 is an answer too: the registry is up and wants credentials.
      if (res.status === 200 || res.status === 401) return;
      lastError = new HarnessError('PROTOCOL', `GET /v2/ answered ${res.status}, expected 200 or 401`);
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      throw new HarnessError(
        'TIMEOUT',
        `docker-registry on port ${port} did not answer GET /v2/ within ${timeoutMs} ms (last: ${String(lastError)}).\n` +
          `--- output ---\n${proc.output()}`,
      );
    }
    await sleep(POLL_MS);
  }
}

function registryRequest(
  port: number,
  pathname: string,
  opts: Omit<RegistryRequestOptions, 'auth'> & { authorization?: string | undefined; timeoutMs?: number; ca?: string | undefined },
): Promise<RegistryResponse> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.authorization !== undefined) headers.authorization = opts.authorization;
  const body = typeof opts.body === 'string' ? Buffer.from(opts.body) : opts.body;
  if (body !== undefined) headers['content-length'] = String(body.length);
  const timeoutMs = opts.timeoutMs ?? REQUEST_TIMEOUT_MS;
  return new Promise<RegistryResponse>((resolve, reject) => {
    const client = opts.ca === undefined ? http : https;
    const req = client.request(
      { host: '127.0.0.1', port, path: pathname, method: opts.method ?? 'GET', headers, agent: false, ...(opts.ca !== undefined ? { ca: opts.ca } : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      },
    );
    req.setTimeout(timeoutMs, () =>
      req.destroy(new HarnessError('TIMEOUT', `registry ${opts.method ?? 'GET'} ${pathname} on port ${port}: no answer within ${timeoutMs} ms`)),
    );
    req.on('error', reject);
    req.end(body);
  });
}

const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

async function pushImage(
  port: number,
  ca: string | undefined,
  authorize: (pathname: string) => string | undefined,
  scratch: string,
  repository: string,
  tag: string,
  image: PushImageOptions,
): Promise<{ digest: string; size: number }> {
  const [os, architecture, variant] = (image.platform ?? 'linux/amd64').split('/');
  const root = path.join(scratch, `image-${randomBytes(6).toString('hex')}`);
  const names: string[] = [];
  for (const [name, content] of Object.entries(image.files)) {
    const file = path.join(root, name);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, typeof content === 'string' || Buffer.isBuffer(content) ? content : await readFile(content.from));
    if (name.startsWith('bin/')) await chmod(file, 0o755);
    names.push(name);
  }
  const tarFile = `${root}.tar`;
  await runCommand('tar', ['--create', '--file', tarFile, '--owner=0', '--group=0', '--numeric-owner', '--sort=name', '-C', root, ...names.sort()]);
  const tar = await readFile(tarFile);
  const layer = gzipSync(tar);
  const config = Buffer.from(
    JSON.stringify({ architecture, os, ...(variant ? { variant } : {}), rootfs: { type: 'layers', diff_ids: [sha256(tar)] }, config: {} }),
  );
  for (const blob of [layer, config]) await pushBlob(port, ca, authorize, repository, blob);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(layer), size: layer.length }],
    }),
  );
  const manifestPath = `/v2/${repository}/manifests/${tag}`;
  const put = await registryRequest(port, manifestPath, {
    method: 'PUT',
    headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    body: manifest,
    authorization: authorize(manifestPath),
    ca,
  });
  if (put.status !== 201) throw new HarnessError('PROTOCOL', `PUT manifest ${repository}:${tag}: expected 201, got ${put.status}: ${put.body.toString()}`);
  return { digest: sha256(manifest), size: manifest.length };
}

async function pushBlob(port: number, ca: string | undefined, authorize: (pathname: string) => string | undefined, repository: string, blob: Buffer): Promise<void> {
  const uploads = `/v2/${repository}/blobs/uploads/`;
  const start = await registryRequest(port, uploads, { method: 'POST', body: Buffer.alloc(0), authorization: authorize(uploads), ca });
  const location = start.headers.location;
  if (start.status !== 202 || !location) {
    throw new HarnessError('PROTOCOL', `POST /v2/${repository}/blobs/uploads/: expected 202 with a Location, got ${start.status}: ${start.body.toString()}`);
  }
  const url = new URL(location, `http://127.0.0.1:${port}`);
  url.searchParams.set('digest', sha256(blob));
  const put = await registryRequest(port, `${url.pathname}${url.search}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream' },
    body: blob,
    authorization: authorize(uploads),
    ca,
  });
  if (put.status !== 201) throw new HarnessError('PROTOCOL', `PUT blob to ${repository}: expected 201, got ${put.status}: ${put.body.toString()}`);
}
