import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { MethodDefinition } from '@grpc/proto-loader';
import { encodeGrpcFrame, GrpcFrameDecoder } from '@slipway/proto';
import { GatewayError } from './gatewayError.js';

// The gateway calls the agent's control service as a gRPC client over the HTTP/2 session the
// agent serves on the connection it dialed. grpc-js clients only dial addresses, so the few
// calls the gateway makes are framed here; the agent side is a real grpc-js server.

const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export interface BidiHandlers<Res> {
  onMessage(message: Res): void;
  onEnd(error: GatewayError | undefined): void;
}

export interface BidiCall<Req> {
  send(message: Req): void;
  cancel(): void;
}

function grpcStatusError(path: string, headers: IncomingHttpHeaders): GatewayError | undefined {
  const status = Number(headers['grpc-status'] ?? '0');
  if (status === 0) return undefined;
  const message = decodeURIComponent(String(headers['grpc-message'] ?? ''));
  return new GatewayError('AGENT_PROTOCOL', `agent answered ${path} with gRPC status ${status}: ${message}`);
}

function openCall(session: ClientHttp2Session, path: string, timeoutMs?: number): ClientHttp2Stream {
  const headers: http2.OutgoingHttpHeaders = {
    ':method': 'POST',
    ':path': path,
    'content-type': 'application/grpc+proto',
    te: 'trailers',
  };
  if (timeoutMs !== undefined) headers['grpc-timeout'] = `${Math.max(1, Math.ceil(timeoutMs))}m`;
  return session.request(headers);
}

// Collects a call's messages and final status; every outcome reaches onEnd exactly once.
function readCall<Res>(
  stream: ClientHttp2Stream,
  method: MethodDefinition<object, Res>,
  onMessage: (m: Res) => void,
  onEnd: (e: GatewayError | undefined) => void,
): void {
  const decoder = new GrpcFrameDecoder(MAX_MESSAGE_BYTES);
  let status: GatewayError | undefined;
  let statusSeen = false;
  let ended = false;
  const end = (err: GatewayError | undefined): void => {
    if (ended) return;
    ended = true;
    onEnd(err);
  };
  stream.on('response', (headers) => {
    if (headers[':status'] !== 200) {
      end(new GatewayError('AGENT_PROTOCOL', `agent answered ${method.path} with HTTP ${headers[':status']}; expected 200`));
      stream.close(http2.constants.NGHTTP2_CANCEL);
      return;
    }
    if (headers['grpc-status'] !== undefined) {
      statusSeen = true;
      status = grpcStatusError(method.path, headers);
    }
  });
  stream.on('trailers', (trailers) => {
    statusSeen = true;
    status = grpcStatusError(method.path, trailers);
  });
  stream.on('data', (chunk: Buffer) => {
    let messages: Buffer[];
    try {
      messages = decoder.push(chunk);
    } catch (err) {
      end(new GatewayError('AGENT_PROTOCOL', `bad gRPC framing from agent on ${method.path}: ${(err as Error).message}`));
      stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
      return;
    }
    for (const m of messages) {
      if (ended) return;
      onMessage(method.responseDeserialize(m));
    }
  });
  stream.on('end', () => {
    end(statusSeen ? status : new GatewayError('AGENT_PROTOCOL', `agent ended ${method.path} without a gRPC status`));
  });
  stream.on('error', (err) => end(new GatewayError('AGENT_LOST', `call ${method.path} failed: ${err.message}`, { cause: err })));
  stream.on('close', () => end(new GatewayError('AGENT_LOST', `call ${method.path} closed before it completed`)));
}

export function unaryCall<Req, Res>(
  session: ClientHttp2Session,
  method: MethodDefinition<Req, Res>,
  request: Req,
  timeoutMs: number,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    let stream: ClientHttp2Stream;
    try {
      stream = openCall(session, method.path, timeoutMs);
    } catch (err) {
      reject(new GatewayError('AGENT_LOST', `cannot call ${method.path}: ${(err as Error).message}`, { cause: err }));
      return;
    }
    let response: Res | undefined;
    const timer = setTimeout(() => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      reject(new GatewayError('AGENT_PROTOCOL', `agent did not answer ${method.path} within ${timeoutMs} ms`));
    }, timeoutMs);
    readCall(
      stream,
      method as unknown as MethodDefinition<object, Res>,
      (m) => {
        response = m;
      },
      (err) => {
        clearTimeout(timer);
        if (err) reject(err);
        else if (response === undefined) reject(new GatewayError('AGENT_PROTOCOL', `agent answered ${method.path} with no message`));
        else resolve(response);
      },
    );
    stream.end(encodeGrpcFrame(method.requestSerialize(request)));
  });
}

export function bidiCall<Req, Res>(session: ClientHttp2Session, method: MethodDefinition<Req, Res>, handlers: BidiHandlers<Res>): BidiCall<Req> {
  const stream = openCall(session, method.path);
  readCall(stream, method as unknown as MethodDefinition<object, Res>, handlers.onMessage, handlers.onEnd);
  return {
    send(message: Req): void {
      if (!stream.writable) return;
      // Control messages are tiny and one per heartbeat interval; the stream's buffer cannot grow.
      stream.write(encodeGrpcFrame(method.requestSerialize(message)));
    },
    cancel(): void {
      if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
    },
  };
}
