import type { Server as HttpServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';

/**
 * Ports to hand out: below the system's ephemeral range, so that no outgoing connection (of this
 * or any other test process) takes one as its local port between the choice and the listen.
 */
const QUIET_PORTS = quietPortRange();

function quietPortRange(): { low: number; high: number } | undefined {
  try {
    const ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return ephemeralLow > 12_000 ? { low: 10_000, high: ephemeralLow - 1 } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A TCP port that was free a moment ago on `host`. For servers whose URL must be known before they
 * start (the sidecar's redirect URI is registered at the IdP first); anything that can listen on
 * port 0 itself should do that instead.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; QUIET_PORTS && attempt < 20; attempt++) {
    const port = QUIET_PORTS.low + Math.floor(Math.random() * (QUIET_PORTS.high - QUIET_PORTS.low + 1));
    if (await isFree(port, host)) return port;
  }
  const server = createServer();
  const port = await listen(server, 0, host);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function isFree(port: number, host: string): Promise<boolean> {
  const server = createServer();
  const free = await listen(server, port, host).then(() => true, () => false);
  if (free) await new Promise<void>((resolve) => server.close(() => resolve()));
  return free;
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
