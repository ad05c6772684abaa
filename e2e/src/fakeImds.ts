import http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';

export interface FakeImds {
  url: string;
  /** What the instance serves as its identity document and signature; replaceable between agent starts. */
  document: Buffer;
  signature: string;
  close(): Promise<void>;
}

// The EC2 instance metadata service as an IMDSv2-only instance runs it: a session token from
// PUT /latest/api/token, then the identity document and its signature for that token only.
export async function startFakeImds(document: Buffer, signature: string): Promise<FakeImds> {
  const tokens = new Set<string>();
  const state = { document, signature };
  const server = http.createServer((req, res) => {
    if (req.method === 'PUT' && req.url === '/latest/api/token') {
      const token = randomUUID();
      tokens.add(token);
      res.end(token);
      return;
    }
    if (req.method !== 'GET' || !tokens.has(String(req.headers['x-aws-ec2-metadata-token'] ?? ''))) {
      res.writeHead(401).end();
      return;
    }
    if (req.url === '/latest/dynamic/instance-identity/document') res.end(state.document);
    else if (req.url === '/latest/dynamic/instance-identity/signature') res.end(state.signature);
    else res.writeHead(404).end();
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get document() {
      return state.document;
    },
    set document(d: Buffer) {
      state.document = d;
    },
    get signature() {
      return state.signature;
    },
    set signature(s: string) {
      state.signature = s;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
