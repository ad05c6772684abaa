import type { ClientHttp2Session, IncomingHttpHeaders } from 'node:http2';
import { Header } from '@slipway/proto';

// A gateway replica that is shutting down still answers, and marks its answers. The session to it
// is then closed gracefully: what is under way finishes, and the next stream opens a new
// connection, which the load balancer gives to another replica.
export function leaveIfDraining(session: ClientHttp2Session, headers: IncomingHttpHeaders): void {
  if (headers[Header.draining] !== undefined && !session.closed && !session.destroyed) session.close();
}
