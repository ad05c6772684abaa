import { BenchError, BenchErrorCodes, type BenchErrorCode } from './benchError.js';
import { BenchProcess } from './benchProcess.js';
import { CLIENT_READY_LINE, type ClientRequest, type ClientResponse, type ClientResult } from './clientRpc.js';
import type { OpenLatencyResult } from './openLatency.js';
import type { TransferResult } from './throughput.js';

type Request = Omit<Extract<ClientRequest, { op: 'transfer' }>, 'id'> | Omit<Extract<ClientRequest, { op: 'openLatency' }>, 'id'>;

// The orchestrator's handle on the bench client process (benchClientMain.ts).
export class BenchClient {
  private nextId = 1;

  private constructor(readonly process: BenchProcess) {}

  static async start(options: { repoRoot: string; env: NodeJS.ProcessEnv; echo: boolean }): Promise<BenchClient> {
    const proc = new BenchProcess({
      name: 'bench-client',
      command: process.execPath,
      args: ['--import', 'tsx', 'loadtest/src/benchClientMain.ts'],
      cwd: options.repoRoot,
      env: options.env,
      echo: options.echo,
    });
    await proc.waitForLine(new RegExp(`^${CLIENT_READY_LINE}$`), 30_000);
    return new BenchClient(proc);
  }

  transfer(request: Omit<Extract<ClientRequest, { op: 'transfer' }>, 'id' | 'op'>): Promise<TransferResult> {
    return this.call({ op: 'transfer', ...request }, request.timeoutMs) as Promise<TransferResult>;
  }

  openLatency(request: Omit<Extract<ClientRequest, { op: 'openLatency' }>, 'id' | 'op'>): Promise<OpenLatencyResult> {
    // A round can take up to one sample timeout past the budget.
    return this.call({ op: 'openLatency', ...request }, request.budgetMs + request.sampleTimeoutMs) as Promise<OpenLatencyResult>;
  }

  // The client enforces the request's own time limit; `limitMs` plus a margin here only guards
  // against the client itself hanging.
  private call(request: Request, limitMs: number): Promise<ClientResult> {
    const id = this.nextId++;
    const proc = this.process;
    return new Promise((resolve, reject) => {
      const onLine = (line: string, stream: 'stdout' | 'stderr'): void => {
        if (stream !== 'stdout' || !line.startsWith('{')) return;
        let response: ClientResponse;
        try {
          response = JSON.parse(line) as ClientResponse;
        } catch {
          return;
        }
        if (response.id !== id && response.id !== -1) return;
        done();
        if (response.ok) resolve(response.result);
        else {
          const code = (BenchErrorCodes as readonly string[]).includes(response.error.code) ? (response.error.code as BenchErrorCode) : 'INTERNAL';
          reject(new BenchError(code, response.error.message));
        }
      };
      const onExit = (): void => {
        done();
        reject(new BenchError('PROCESS_FAILED', `the bench client ended during a ${request.op} request\n${proc.describeExit()}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new BenchError('TIMEOUT', `the bench client did not answer a ${request.op} request within ${limitMs + 30_000} ms`));
      }, limitMs + 30_000);
      const done = (): void => {
        clearTimeout(timer);
        proc.off('line', onLine);
        proc.child.off('exit', onExit);
      };
      proc.on('line', onLine);
      proc.child.once('exit', onExit);
      proc.writeLine(JSON.stringify({ id, ...request }));
    });
  }

  stop(): Promise<unknown> {
    return this.process.stop(2_000);
  }
}
