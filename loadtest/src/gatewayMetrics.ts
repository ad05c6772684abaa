import http2 from 'node:http2';
import { BenchError } from './benchError.js';

// GET /metrics from the gateway under test (HTTP/2 over TLS, trusting the bench's CA).
export function fetchGatewayMetrics(gatewayUrl: string, ca: Buffer, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(gatewayUrl, { ca });
    const timer = setTimeout(() => finish(new BenchError('TIMEOUT', `GET ${gatewayUrl}/metrics did not answer within ${timeoutMs} ms`)), timeoutMs);
    const finish = (error: Error | undefined, body?: string): void => {
      clearTimeout(timer);
      session.destroy();
      if (error) reject(error);
      else resolve(body!);
    };
    session.on('error', (err) => finish(new BenchError('PROCESS_FAILED', `GET ${gatewayUrl}/metrics: ${err.message}`, { cause: err })));
    const req = session.request({ ':path': '/metrics' });
    req.on('error', (err) => finish(new BenchError('PROCESS_FAILED', `GET ${gatewayUrl}/metrics: ${err.message}`, { cause: err })));
    let status = 0;
    let body = '';
    req.setEncoding('utf8');
    req.on('response', (h) => {
      status = Number(h[':status']);
    });
    req.on('data', (d: string) => {
      body += d;
    });
    req.on('end', () =>
      status === 200 ? finish(undefined, body) : finish(new BenchError('PROCESS_FAILED', `GET ${gatewayUrl}/metrics answered ${status}: ${body.slice(0, 200)}`)),
    );
  });
}

// Sum of every sample of a series in Prometheus text (all label sets), 0 when absent.
export function metricTotal(text: string, name: string, labelFilter: (labels: string) => boolean = () => true): number {
  let total = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (m && m[1] === name && labelFilter(m[2] ?? '')) total += Number(m[3]);
  }
  return total;
}
