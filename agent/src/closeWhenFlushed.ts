import type net from 'node:net';

// Closes a connection whose side of the conversation is over once what is still queued on it has
// been written, and at the latest after limitMs: destroy() would drop the queued tail (the rest of
// what a client sent, an ERROR frame), and a peer that stops reading must not hold it for ever.
export function closeWhenFlushed(socket: net.Socket, limitMs: number): void {
  if (socket.destroyed) return;
  const timer = setTimeout(() => socket.destroy(), limitMs);
  socket.once('close', () => clearTimeout(timer));
  socket.destroySoon();
}
