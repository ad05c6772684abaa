// The bench client as its own process, so that on a small machine its CPU competes with the
// gateway, agent and proxy the way a real docker/buildx client's would, and none of it is spent
// inside a Slipway process. Serves one request at a time (see clientRpc.ts); exits when its
// stdin closes or on SIGTERM/SIGINT.
import readline from 'node:readline';
import { toBenchError } from './benchError.js';
import { CLIENT_READY_LINE, type ClientRequest, type ClientResponse, type ClientResult } from './clientRpc.js';
import { measureOpenLatency } from './openLatency.js';
import { measureTransfer } from './throughput.js';

function execute(request: ClientRequest): Promise<ClientResult> {
  switch (request.op) {
    case 'transfer':
      return measureTransfer(request.endpoint, request.direction, request.bytes, request.timeoutMs);
    case 'openLatency':
      return measureOpenLatency(request.endpoint, request);
  }
}

const send = (response: ClientResponse): void => {
  process.stdout.write(`${JSON.stringify(response)}\n`);
};

let queue = Promise.resolve();
const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on('line', (line) => {
  if (line.trim() === '') return;
  queue = queue.then(async () => {
    let request: ClientRequest;
    try {
      request = JSON.parse(line) as ClientRequest;
    } catch (err) {
      send({ id: -1, ok: false, error: { code: 'PROTOCOL', message: `bench client: request is not JSON: ${(err as Error).message}` } });
      return;
    }
    try {
      send({ id: request.id, ok: true, result: await execute(request) });
    } catch (err) {
      const error = toBenchError(err);
      send({ id: request.id, ok: false, error: { code: error.code, message: error.message } });
    }
  });
});
// The orchestrator closes our stdin when it is done with us, or by dying: either way, go now.
lines.on('close', () => process.exit(0));
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0));
process.stdout.write(`${CLIENT_READY_LINE}\n`);
