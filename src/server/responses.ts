import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { renderPage, type PageContent } from './pages.js';

const NO_STORE = 'no-store';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string | string[]> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': NO_STORE,
  });
  res.end(text);
}

export function sendHtml(res: ServerResponse, status: number, content: PageContent, headers: Record<string, string | string[]> = {}): void {
  const html = renderPage(content);
  res.writeHead(status, {
    ...headers,
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    'cache-control': NO_STORE,
    'x-content-type-options': 'nosniff',
    // No other site may frame a page of the sidecar (a framed sign-out confirmation could be clicked
    // unawares); the portal's own framesets may.
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'",
    'x-frame-options': 'SAMEORIGIN',
  });
  res.end(html);
}

export function redirect(res: ServerResponse, location: string, setCookies: string[] = []): void {
  const headers: Record<string, string | string[]> = { location, 'cache-control': NO_STORE, 'content-length': '0' };
  if (setCookies.length > 0) headers['set-cookie'] = setCookies;
  res.writeHead(302, headers);
  res.end();
}

/** The answer to a request without valid credentials that may not be redirected. */
export function sendUnauthorized(res: ServerResponse, realm: string): void {
  sendJson(
    res,
    401,
    { error: 'unauthorized', error_description: 'Authentication is required to access this resource.' },
    { 'www-authenticate': `Bearer realm="${realm}"` },
  );
}

/** True when the client prefers an HTML page to JSON. */
export function acceptsHtml(req: IncomingMessage): boolean {
  return req.headers.accept?.includes('text/html') ?? false;
}

/**
 * Answers on a raw socket (a refused WebSocket upgrade, a malformed request) and closes it once the
 * answer is written; a socket that can no longer be written is destroyed at once.
 */
export function answerSocket(socket: Duplex, statusLine: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(`HTTP/1.1 ${statusLine}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`, () => socket.destroy());
}
