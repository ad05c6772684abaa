// docs/OPERATIONS.md's error tables list exactly the codes each program defines, with the exit
// codes, HTTP statuses and WebSocket close codes the code gives them: a code added without a row
// (or a row for a code that is gone) fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { WireErrorCodes, WireErrorHttpStatus, WsCloseCode } from '@slipway/proto';
import { GatewayErrorCodes } from '@slipway/gateway';
import { AgentErrorCodes } from '@slipway/agent';
import { exitCodeOf } from '@slipway/cli';
import { CliErrorCodes } from '../../cli/src/cliError.js';

const GUIDE = fs.readFileSync(fileURLToPath(new URL('../../docs/OPERATIONS.md', import.meta.url)), 'utf8');

// The rows of the table under the ### heading naming `source`: code -> the other cells.
function table(source: string): Map<string, string[]> {
  const start = GUIDE.indexOf(`(\`${source}\`)`);
  assert.ok(start >= 0, `docs/OPERATIONS.md has no table for ${source}`);
  const rows = new Map<string, string[]>();
  for (const line of GUIDE.slice(start).split('\n').slice(1)) {
    if (line.startsWith('#')) break;
    const m = /^\| `([A-Z_]+)` \|(.*)\|$/.exec(line);
    if (!m) continue;
    assert.ok(!rows.has(m[1]!), `${source}: ${m[1]} has two rows`);
    rows.set(m[1]!, m[2]!.split('|').map((c) => c.trim()));
  }
  return rows;
}

function sameCodes(source: string, rows: Map<string, string[]>, codes: readonly string[]): void {
  assert.deepEqual([...rows.keys()].sort(), [...codes].sort(), `${source}: the table and the code disagree`);
  for (const [code, cells] of rows) assert.ok(cells.every((c) => c.length > 0), `${source}: ${code} has an empty cell`);
}

test('wire codes, with their HTTP statuses and WebSocket close codes', () => {
  const rows = table('proto/src/tunnelProtocol.ts');
  sameCodes('wire', rows, WireErrorCodes);
  for (const code of WireErrorCodes) {
    const [http, ws] = rows.get(code)!;
    assert.equal(Number(http), WireErrorHttpStatus[code], `${code} HTTP status`);
    assert.equal(Number(ws), WsCloseCode[code], `${code} WebSocket close code`);
  }
});

test('gateway codes', () => sameCodes('gateway', table('gateway/src/gatewayError.ts'), GatewayErrorCodes));

test('agent codes', () => sameCodes('agent', table('agent/src/agentError.ts'), AgentErrorCodes));

test('CLI codes, with their exit codes', () => {
  const rows = table('cli/src/cliError.ts');
  sameCodes('cli', rows, CliErrorCodes);
  for (const code of CliErrorCodes) assert.equal(Number(rows.get(code)![0]), exitCodeOf(code), `${code} exit code`);
});
