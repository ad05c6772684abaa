import { createLogger } from '@slipway/proto';
import { loadConfig, agentUsage, applyInstanceIdentity } from './config.js';
import { Agent } from './agent.js';
import { toAgentError } from './agentError.js';
import { fetchInstanceIdentity } from './instanceIdentity.js';

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  process.stdout.write(agentUsage());
  process.exit(0);
}
let config;
try {
  config = loadConfig(process.env, argv);
  // On EC2 the agent is what its signed instance identity document says it is.
  if (config.identitySource === 'imds') {
    config = applyInstanceIdentity(config, await fetchInstanceIdentity({ baseUrl: config.imdsUrl, timeoutMs: config.connectTimeoutMs }));
  }
} catch (err) {
  process.stderr.write(`slipway-agent: ${toAgentError(err).message}\n`);
  process.exit(2);
}
const log = createLogger('agent', config.logLevel);
const agent = new Agent(config, log);
agent.start();
let stopping = false;
const shutdown = (signal: string): void => {
  if (stopping) {
    log.warn('second signal: exiting now', { signal });
    process.exit(1);
  }
  stopping = true;
  log.info('draining', { signal, graceMs: config.drainGraceMs });
  agent.drain().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
