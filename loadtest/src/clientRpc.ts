// What the orchestrator (benchTunnel.ts) and the bench client process say to each other: one
// JSON object per line, requests on the client's stdin, responses on its stdout, one request at a
// time. The client prints nothing else on stdout.
import type { BenchEndpoint } from './benchEndpoint.js';
import type { OpenLatencyResult } from './openLatency.js';
import type { TransferResult } from './throughput.js';

export type ClientRequest =
  | { id: number; op: 'transfer'; endpoint: BenchEndpoint; direction: 'upload' | 'download'; bytes: number; timeoutMs: number }
  | { id: number; op: 'openLatency'; endpoint: BenchEndpoint; concurrency: number; rounds: number; budgetMs: number; sampleTimeoutMs: number };

export type ClientResult = TransferResult | OpenLatencyResult;

export type ClientResponse =
  | { id: number; ok: true; result: ClientResult }
  | { id: number; ok: false; error: { code: string; message: string } };

export const CLIENT_READY_LINE = 'BENCH_CLIENT_READY';
