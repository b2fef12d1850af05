import type { Server as HttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';

/**
 * A TCP port that was free a moment ago on `host`. For servers whose URL must be known before they
 * start (the sidecar's redirect URI is registered at the IdP first); anything that can listen on
 * port 0 itself should do that instead.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  const port = await listen(server, 0, host);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Starts `server` on `host:port` (0 = any free port) and resolves with the bound port. */
export async function listen(server: Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('server is not listening on TCP');
  return address.port;
}

/** Closes an HTTP server and every connection it still holds, idle or busy. */
export async function stopServer(server: HttpServer): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}
