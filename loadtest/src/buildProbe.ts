// Loaded into the `slipway build` process by the build bench (node --import): collects what the
// CLI publishes on its diagnostics channel (one message per context upload served) and when the
// process reached a few milestones, and prints it as one line on stderr when the process exits.
// Without a subscriber the CLI publishes nothing.
import { subscribe } from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';
import { PROBE_PREFIX, type ProbeReport } from './buildProbeLine.js';

const now = (): number => performance.timeOrigin + performance.now();
const report: ProbeReport = { processStartedAt: performance.timeOrigin, probeLoadedAt: now(), firstSocketAt: undefined, exitAt: 0, uploads: [], cpuUserMs: 0, cpuSystemMs: 0 };
subscribe('slipway:build:upload', (message) => report.uploads.push(message as ProbeReport['uploads'][number]));
// Node publishes every client socket it creates: the first is the connection to the gateway.
subscribe('net.client.socket', () => {
  report.firstSocketAt ??= now();
});

process.on('exit', () => {
  const cpu = process.cpuUsage();
  report.exitAt = now();
  report.cpuUserMs = cpu.user / 1000;
  report.cpuSystemMs = cpu.system / 1000;
  process.stderr.write(`${PROBE_PREFIX}${JSON.stringify(report)}\n`);
});
