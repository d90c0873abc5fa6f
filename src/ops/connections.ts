/**
 * Connections a client opened but never sent a request on (browsers open such speculative
 * connections). Node's server.close() waits for them until its headers timeout; nothing can be
 * in flight on them, so shutdown may close them at once.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

export function trackUnusedConnections(server: Server): { closeUnused(): void } {
  const unused = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    unused.add(socket);
    socket.once('close', () => unused.delete(socket));
  });
  server.on('request', (request) => unused.delete(request.socket));
  return {
    closeUnused() {
      for (const socket of unused) socket.destroy();
      unused.clear();
    },
  };
}
