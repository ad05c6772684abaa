// The end-to-end harness: real processes and peers for tests across Slipway's programs.
export { HarnessError, type HarnessErrorCode } from './harnessError.js';
export {
  ManagedProcess,
  spawnManaged,
  runCommand,
  tempDir,
  mountsUnder,
  type ExitStatus,
  type SpawnManagedOptions,
  type RunCommandOptions,
  type CommandResult,
  type TempDir,
} from './processes.js';
export {
  startRedis,
  freePort,
  redisCommand,
  encodeCommand,
  type RedisServer,
  type StartRedisOptions,
  type RespValue,
} from './redisServer.js';
export {
  makeBusyboxContext,
  BUSYBOX_PATH,
  DEFAULT_DOCKERFILE,
  type BusyboxContext,
  type BusyboxContextOptions,
} from './busyboxContext.js';
export {
  prepareBuildx,
  buildxAvailable,
  buildxUnavailableReason,
  dockerCliPath,
  DEBIAN13_ROOT,
  BUILDX_PLUGIN_PATH,
  DOCKER_CLI_CANDIDATES,
  type Buildx,
  type BuildxRunOptions,
} from './buildx.js';
export * from './dockerd.js';
export * from './buildkitClient.js';
export * from './slipwayStack.js';
export * from './slipwayClientEnv.js';
export * from './echoServer.js';
export * from './tunnelProbe.js';
export * from './cliProcess.js';
export * from './testTunnelClient.js';
export * from './squid.js';
export * from './agentProcess.js';
export * from './buildLifecycle.js';
export * from './redisCluster.js';
export * from './tcpBalancer.js';
export * from './fakeImds.js';
export * from './inspectionCa.js';
export * from './connectProxy.js';
export * from './countingRelay.js';
export * from './tlsRecordTap.js';
export * from './registry.js';
export * from './registryTokenServer.js';
