import type { CommandSpec, FlagSpec } from './commandLine.js';

// Every command the CLI knows, with its arguments and flags: what the parser accepts and what
// --help shows come from this one table.

const connectionFlags: Record<string, FlagSpec> = {
  '--gateway': { kind: 'value', env: 'SLIPWAY_GATEWAY', placeholder: 'URL', help: 'https:// URL of the gateway (default: the one you logged in to)' },
  '--ca-cert': { kind: 'value', env: 'SLIPWAY_CA_CERT', placeholder: 'PATH', help: "PEM CA(s) trusted besides Node's roots and NODE_EXTRA_CA_CERTS (a TLS-inspecting proxy's, say)" },
  '--connect-timeout-ms': { kind: 'value', env: 'SLIPWAY_CONNECT_TIMEOUT_MS', placeholder: 'MS', help: 'limit for reaching the gateway (100-600000, default 15000)' },
};

const tunnelFlags: Record<string, FlagSpec> = {
  ...connectionFlags,
  '--token': { kind: 'value', env: 'SLIPWAY_TOKEN', placeholder: 'TOKEN', help: 'project token (default: the stored one, else the CI job\'s OIDC identity)' },
  '--project': { kind: 'value', env: 'SLIPWAY_PROJECT', placeholder: 'NAME', help: 'project; required when the token comes from the CI\'s OIDC identity' },
  '--oidc-audience': { kind: 'value', env: 'SLIPWAY_OIDC_AUDIENCE', placeholder: 'AUD', help: 'audience of the CI OIDC token (default slipway)' },
  '--platform': { kind: 'value', env: 'SLIPWAY_PLATFORM', placeholder: 'P', help: 'linux/amd64 or linux/arm64' },
  '--transport': { kind: 'value', env: 'SLIPWAY_TRANSPORT', placeholder: 'T', help: 'auto, h2 or websocket (default auto)' },
  '--acquire-timeout-ms': { kind: 'value', env: 'SLIPWAY_ACQUIRE_TIMEOUT_MS', placeholder: 'MS', help: 'how long to wait for a builder (default 600000)' },
  '--build-idle-ms': { kind: 'value', env: 'SLIPWAY_BUILD_IDLE_MS', placeholder: 'MS', help: 'finish the build this long after the last connection (default 30000)' },
  '--keepalive-ms': { kind: 'value', env: 'SLIPWAY_KEEPALIVE_MS', placeholder: 'MS', help: 'keepalive on idle gateway connections, below proxies\' idle timeouts (0 none, default 20000)' },
  '--log-level': { kind: 'value', env: 'SLIPWAY_LOG_LEVEL', placeholder: 'LEVEL', help: 'debug, info, warn, error or silent (default warn)' },
};

// The daemon serves every platform on sockets of its own, so it takes the tunnel settings
// without --platform and --listen.
const daemonFlags: Record<string, FlagSpec> = Object.fromEntries(Object.entries(tunnelFlags).filter(([flag]) => flag !== '--platform'));

const adminFlags: Record<string, FlagSpec> = {
  ...connectionFlags,
  '--admin-token': { kind: 'value', env: 'SLIPWAY_ADMIN_TOKEN', placeholder: 'TOKEN', help: 'admin token (default: the one stored by slipway login --admin)' },
  '--json': { kind: 'switch', help: 'print JSON on stdout instead of a table' },
};

const specs: CommandSpec[] = [
  {
    name: 'doctor',
    args: [],
    flags: {
      ...connectionFlags,
      '--token': tunnelFlags['--token']!,
      '--project': tunnelFlags['--project']!,
      '--oidc-audience': tunnelFlags['--oidc-audience']!,
      '--transport': tunnelFlags['--transport']!,
      '--keepalive-ms': tunnelFlags['--keepalive-ms']!,
      '--platform': { kind: 'list', env: 'SLIPWAY_PLATFORM', placeholder: 'P', help: 'platform whose builder to ask (default linux/amd64 and linux/arm64)' },
      '--acquire-timeout-ms': { kind: 'value', env: 'SLIPWAY_ACQUIRE_TIMEOUT_MS', placeholder: 'MS', help: 'how long to wait for each builder (default 30000)' },
      '--json': { kind: 'switch', help: 'print the report as JSON' },
    },
    summary:
      'Check, in order, everything between here and a builder: configuration and token, DNS, proxy\n' +
      'selection, TCP, TLS (and who issued the certificate), HTTP/2, WebSocket, authentication, a\n' +
      "builder per platform answering BuildKit's ListWorkers, and what configure-docker set up. Each\n" +
      'failure comes with a fix; the exit code is that of the first failure (0 when all pass).',
  },
  {
    name: 'proxy',
    args: [],
    flags: { ...tunnelFlags, '--listen': { kind: 'list', env: 'SLIPWAY_LISTEN', placeholder: 'ADDRESS', help: 'unix:///PATH.sock or tcp://HOST:PORT' } },
    summary:
      'Serve local endpoints for docker/buildx; each connection is one tunnel to a builder. The first\n' +
      "connection creates a build and acquires a builder (the project's warm one when it is free); the\n" +
      'build ends --build-idle-ms after the last connection closes.',
  },
  {
    name: 'dial-stdio',
    args: [],
    flags: tunnelFlags,
    summary: 'Carry stdin/stdout as one tunnel stream (for buildx/ssh-style connection helpers); its build ends\nwhen the stream does.',
  },
  {
    name: 'configure-docker',
    args: [],
    flags: { ...daemonFlags, '--uninstall': { kind: 'switch', help: 'put back everything configure-docker changed, as it was' } },
    summary:
      "Make Docker build on Slipway: a buildx builder 'slipway' (remote driver, a node per platform, this\n" +
      "machine's first) on the sockets of the Slipway daemon (started now, and again when it dies),\n" +
      'selected for every Docker context; the builder alias so plain docker build runs buildx; and the\n' +
      'docker slipway plugin. Written straight into $DOCKER_CONFIG (buildx need not be installed);\n' +
      'where buildx is, docker buildx inspect checks the result. Running it again changes nothing.',
  },
  {
    name: 'daemon start',
    args: [],
    flags: daemonFlags,
    summary: 'Start the Slipway daemon unless it runs: a socket per platform in $XDG_CONFIG_HOME/slipway/docker\n(mode 0600), each connection a tunnel to a builder; its worker is restarted when it dies.',
  },
  { name: 'daemon stop', args: [], flags: {}, summary: 'Stop the Slipway daemon; its builds are finished first.' },
  { name: 'daemon status', args: [], flags: { '--json': { kind: 'switch', help: 'print JSON' } }, summary: 'Say whether the Slipway daemon runs, with its processes and sockets.' },
  { name: 'daemon run', args: [], flags: daemonFlags, summary: 'The daemon itself, in the foreground (daemon start runs it).', hidden: true },
  { name: 'daemon worker', args: [], flags: daemonFlags, summary: "The daemon's worker (started by the daemon).", hidden: true },
  {
    name: 'login',
    args: [],
    flags: {
      ...connectionFlags,
      '--token': { kind: 'value', placeholder: 'TOKEN', help: 'the token to store (visible to other local users in the process list: prefer --token-stdin)' },
      '--token-stdin': { kind: 'switch', help: 'read the token from stdin (without either flag, a terminal is asked, without echo)' },
      '--admin': { kind: 'switch', help: 'the token is an admin token (for projects, tokens and trust)' },
    },
    summary:
      'Check a token with the gateway, then store it (with the gateway URL and CA) for later commands,\n' +
      'in $XDG_CONFIG_HOME/slipway/credentials.json (default ~/.config/slipway/), readable only by you.\n' +
      'SLIPWAY_TOKEN and SLIPWAY_ADMIN_TOKEN still win over what is stored.',
  },
  {
    name: 'logout',
    args: [],
    flags: { '--admin': { kind: 'switch', help: 'forget only the admin token' } },
    summary: 'Forget the stored credentials. The tokens stay valid at the gateway until they expire or are revoked.',
  },
  {
    name: 'projects create',
    args: ['NAME'],
    flags: { ...adminFlags, '--isolate-untrusted': { kind: 'switch', help: "build untrusted CI identities (e.g. fork pull requests) away from the project's cache" } },
    summary: 'Create a project.',
  },
  { name: 'projects list', args: [], flags: adminFlags, summary: 'List projects.' },
  { name: 'projects delete', args: ['NAME'], flags: adminFlags, summary: 'Delete a project: its tokens are revoked and its trust policies dropped.' },
  {
    name: 'tokens create',
    args: ['PROJECT'],
    flags: {
      ...adminFlags,
      '--scope': { kind: 'list', placeholder: 'SCOPE', help: 'build or read (default build)' },
      '--ttl': { kind: 'value', placeholder: 'DURATION', help: 'life of the token, e.g. 90m, 12h, 30d (default 30d)' },
      '--description': { kind: 'value', placeholder: 'TEXT', help: 'what the token is for (shown by tokens list)' },
    },
    summary: 'Issue a project token. The token is printed once, alone, on stdout: TOKEN=$(slipway tokens create web)',
  },
  { name: 'tokens list', args: ['PROJECT'], flags: adminFlags, summary: "List a project's tokens (never the tokens themselves)." },
  { name: 'tokens revoke', args: ['ID'], flags: adminFlags, summary: 'Revoke a token by its id; builds it started lose their tunnels.' },
  {
    name: 'trust add',
    args: ['PROJECT'],
    flags: {
      ...adminFlags,
      '--issuer': { kind: 'value', placeholder: 'URL', help: "the CI's OIDC issuer, e.g. https://token.actions.githubusercontent.com" },
      '--audience': { kind: 'value', placeholder: 'AUD', help: 'required audience of the CI token (the CLI asks for slipway by default)' },
      '--condition': { kind: 'list', placeholder: 'CLAIM=PATTERN', help: 'a claim the CI token must match (* within a path segment, ** across)' },
      '--untrusted-when': { kind: 'list', placeholder: 'CLAIM=PATTERN', help: 'accept, but as untrusted, tokens whose claim matches' },
      '--allow-any-subject': { kind: 'switch', help: 'accept conditions that name no subject claim (every identity of the issuer may match)' },
      '--scope': { kind: 'list', placeholder: 'SCOPE', help: 'scopes of the Slipway token handed out (default build)' },
      '--token-ttl': { kind: 'value', placeholder: 'DURATION', help: 'life of the Slipway token handed out, e.g. 1h' },
      '--id': { kind: 'value', placeholder: 'ID', help: 'name of the policy (default: made up by the gateway)' },
    },
    summary: 'Let CI jobs whose OIDC token matches get short-lived tokens for PROJECT (no stored secret).',
  },
  { name: 'trust list', args: ['PROJECT'], flags: adminFlags, summary: "List a project's trust policies." },
  { name: 'trust remove', args: ['PROJECT', 'ID'], flags: adminFlags, summary: 'Remove a trust policy.' },
];

export const COMMANDS: ReadonlyMap<string, CommandSpec> = new Map(specs.map((s) => [s.name, s]));

/** Command groups (`projects`, `tokens`, `trust`) and their subcommands. */
export const GROUPS: ReadonlyMap<string, string[]> = (() => {
  const groups = new Map<string, string[]>();
  for (const s of specs) {
    if (s.hidden) {
      // Known to the parser (below), never offered.
      const [group] = s.name.split(' ');
      if (!groups.has(group!)) groups.set(group!, []);
      continue;
    }
    const [group, sub] = s.name.split(' ');
    if (sub !== undefined) groups.set(group!, [...(groups.get(group!) ?? []), sub]);
  }
  return groups;
})();

export const OVERVIEW = `Usage: slipway <command> [arguments] [flags]

Builds:
  proxy --platform P --listen ADDRESS   serve BuildKit endpoints for docker/buildx
  dial-stdio --platform P               carry stdin/stdout as one tunnel (connection helpers)

Build:
  build CONTEXT [-f F] [-t T] [--platform P,...] [--output SPEC]   build with BuildKit through Slipway, no local Docker

Diagnosis:
  doctor [--json]                       check every step to a builder, with a fix for each failure

Docker:
  configure-docker [--uninstall]        docker build, docker buildx build and docker compose build on Slipway
  daemon start | stop | status          the background daemon serving the builder's sockets

Credentials:
  login [--admin] [--token-stdin]       check a token with the gateway and store it
  logout [--admin]                      forget stored credentials

Administration (admin token):
  projects create NAME | list | delete NAME
  tokens create PROJECT | list PROJECT | revoke ID
  trust add PROJECT --issuer URL --audience AUD --condition CLAIM=PATTERN ... | list PROJECT | remove PROJECT ID

slipway --version prints the version; slipway <command> --help shows a command's flags; each flag's environment variable is in brackets.
HTTPS_PROXY / NO_PROXY are honoured (HTTP CONNECT). Exit codes: see cli/src/cliError.ts.`;
