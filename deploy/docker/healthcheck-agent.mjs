// HEALTHCHECK of the agent image. The agent listens on nothing, so health is what it holds: at
// least one established TCP connection to a gateway port (the link), read from /proc/net/tcp*.
import fs from 'node:fs';

const ports = new Set(
  (process.env.SLIPWAY_GATEWAY ?? '')
    .split(',')
    .filter(Boolean)
    .map((url) => Number(new URL(url.trim()).port || 443)),
);
if (ports.size === 0) ports.add(443);
const ESTABLISHED = '01';
let linked = false;
for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
  let text = '';
  try {
    text = fs.readFileSync(table, 'utf8');
  } catch {
    continue;
  }
  for (const line of text.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 4 || fields[3] !== ESTABLISHED) continue;
    const remotePort = parseInt(fields[2].split(':')[1], 16);
    if (ports.has(remotePort)) linked = true;
  }
}
process.exit(linked ? 0 : 1);
