import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { listen, stopServer } from './free-port.js';
import { escapeHtml, htmlPage } from './html.js';

/**
 * The demo "legacy portal": an unmodified application behind the sidecar that records every request
 * and shows the identity headers it received. Routes:
 * - `/slow?ms=N` answers after N ms (its timer stops when the client goes away),
 * - `/echo` answers JSON describing the request,
 * - `/big?kb=N` streams N KiB,
 * - `/cut?kb=N` promises 2N KiB, sends N KiB and drops the connection (a portal failing mid-answer),
 * - `/ws` accepts a WebSocket upgrade (after `delayMs=N` ms) and echoes the raw bytes it receives (frames stay masked, so
 *   it suits byte-level tests rather than a browser's WebSocket); `/ws-silent` never answers one,
 * - `/1k` answers exactly 1024 bytes of HTML (benchmark),
 * - `/early` answers 413 at once, before the body it does not want (whose end it still awaits, as
 *   Node does to keep the connection), and counts as aborted if the connection ends before the body,
 * - `/hop-by-hop` answers with its own status text, two cookies and connection-level headers (a
 *   proxy must drop those),
 * - anything else: the "Legacy portal" page (HTML, or JSON for `Accept: application/json`).
 */

export interface RecordedRequest {
  method: string;
  /** The request target exactly as received. */
  url: string;
  headers: IncomingHttpHeaders;
  /** Header names and values in arrival order, duplicates kept. */
  rawHeaders: string[];
  bodyLength: number;
  /** Hex SHA-256 of the body; set once the body has been read. */
  bodySha256: string;
  /** The client went away before the answer was complete (on `/early`: before the body was). */
  aborted: boolean;
}

export interface PortalOptions {
  /** Default 0: any free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
}

export interface LegacyPortal {
  /** `http://<host>:<port>` */
  url: string;
  port: number;
  /** Every request, upgrades included, in arrival order. */
  requests: RecordedRequest[];
  /** WebSocket connections the portal holds open (answered on `/ws` or left waiting on `/ws-silent`). */
  openUpgrades(): number;
  stop(): Promise<void>;
}

export const IDENTITY_HEADERS = [
  'X-Forwarded-User',
  'X-Forwarded-Email',
  'X-Forwarded-Name',
  'X-Forwarded-Groups',
  'X-Forwarded-Roles',
  'X-Forwarded-Subject',
  'X-Auth-Method',
  'X-Forwarded-Client-Id',
];

const EMPTY_SHA256 = createHash('sha256').digest('hex');
const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const KIB = Buffer.alloc(1024, 'legacy portal payload 0123456789\n');
const MAX_KIB = 1024 * 1024;
const MAX_DELAY_MS = 10 * 60 * 1000;
const ONE_KIB_PAGE = pageOfExactly(1024);

export async function startPortal(options: PortalOptions = {}): Promise<LegacyPortal> {
  const host = options.host ?? '127.0.0.1';
  const requests: RecordedRequest[] = [];
  const upgraded = new Set<Duplex>();
  const server = createServer((req, res) => handleRequest(req, res, record(requests, req)));
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    record(requests, req);
    acceptWebSocket(req, socket, head, upgraded);
  });
  const port = await listen(server, options.port ?? 0, host);
  return {
    url: `http://${host}:${port}`,
    port,
    requests,
    openUpgrades: () => upgraded.size,
    stop: async () => {
      for (const socket of upgraded) socket.destroy();
      await stopServer(server);
    },
  };
}

function record(requests: RecordedRequest[], req: IncomingMessage): RecordedRequest {
  const entry: RecordedRequest = {
    method: req.method ?? '',
    url: req.url ?? '',
    headers: req.headers,
    rawHeaders: req.rawHeaders,
    bodyLength: 0,
    bodySha256: EMPTY_SHA256,
    aborted: false,
  };
  requests.push(entry);
  return entry;
}

function handleRequest(req: IncomingMessage, res: ServerResponse, entry: RecordedRequest): void {
  if (entry.url.startsWith('/early')) return answerBeforeTheBody(req, res, entry);
  res.on('close', () => {
    if (!res.writableFinished) entry.aborted = true;
  });
  readBody(req, entry).then(
    () => route(req, res, entry),
    () => res.destroy(),
  );
}

async function readBody(req: IncomingMessage, entry: RecordedRequest): Promise<void> {
  const hash = createHash('sha256');
  for await (const chunk of req as AsyncIterable<Buffer>) {
    hash.update(chunk);
    entry.bodyLength += chunk.length;
  }
  entry.bodySha256 = hash.digest('hex');
}

function route(req: IncomingMessage, res: ServerResponse, entry: RecordedRequest): void {
  const { pathname, searchParams } = new URL(entry.url, 'http://portal.invalid');
  switch (pathname) {
    case '/slow':
      return answerAfter(res, boundedInteger(searchParams.get('ms'), MAX_DELAY_MS));
    case '/echo':
      return send(res, 200, 'application/json', JSON.stringify(describe(entry)));
    case '/big':
      return streamKibibytes(res, boundedInteger(searchParams.get('kb'), MAX_KIB));
    case '/cut':
      return breakOffAfterKibibytes(res, boundedInteger(searchParams.get('kb'), MAX_KIB));
    case '/1k':
      return send(res, 200, 'text/html; charset=utf-8', ONE_KIB_PAGE);
    case '/hop-by-hop':
      return sendWithHopByHopHeaders(res);
    case '/ws':
      return send(res, 426, 'text/plain; charset=utf-8', 'WebSocket upgrade required\n', { upgrade: 'websocket' });
    default:
      return sendPortalPage(req, res, entry);
  }
}

function answerBeforeTheBody(req: IncomingMessage, res: ServerResponse, entry: RecordedRequest): void {
  // Not the request's 'close': once the answer is finished, Node reports only the connection's.
  req.socket.once('close', () => {
    if (!req.complete) entry.aborted = true;
  });
  send(res, 413, 'text/plain; charset=utf-8', 'too large\n');
  readBody(req, entry).catch(() => undefined);
}

function sendWithHopByHopHeaders(res: ServerResponse): void {
  res.writeHead(200, 'Fine Thanks', [
    'Set-Cookie', 'portal_a=1; Path=/',
    'Set-Cookie', 'portal_b=2; Path=/',
    'X-Portal-Hop', 'only for the next hop',
    'Connection', 'X-Portal-Hop',
    'Keep-Alive', 'timeout=5',
    'Trailer', 'X-Checksum',
    'Content-Type', 'text/plain; charset=utf-8',
  ]);
  res.end('hop-by-hop\n');
}

function answerAfter(res: ServerResponse, ms: number): void {
  const timer = setTimeout(() => send(res, 200, 'text/plain; charset=utf-8', `answered after ${ms} ms\n`), ms);
  res.on('close', () => clearTimeout(timer));
}

function streamKibibytes(res: ServerResponse, kib: number): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': kib * KIB.length });
  pipeline(Readable.from(repeat(KIB, kib)), res).catch(() => res.destroy());
}

function breakOffAfterKibibytes(res: ServerResponse, kib: number): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 2 * kib * KIB.length });
  for (let i = 0; i < kib; i++) res.write(KIB);
  res.socket?.end(() => res.destroy());
}

function* repeat(chunk: Buffer, times: number): Generator<Buffer> {
  for (let i = 0; i < times; i++) yield chunk;
}

function describe(entry: RecordedRequest) {
  const { method, url, headers, rawHeaders, bodyLength, bodySha256 } = entry;
  return { method, url, headers, rawHeaders, bodyLength, bodySha256 };
}

function sendPortalPage(req: IncomingMessage, res: ServerResponse, entry: RecordedRequest): void {
  const identity = receivedIdentity(entry.headers);
  if (req.headers.accept?.includes('application/json')) {
    return send(res, 200, 'application/json', JSON.stringify({ portal: 'legacy', method: entry.method, url: entry.url, identity, headers: entry.headers }));
  }
  send(res, 200, 'text/html; charset=utf-8', portalPage(entry, identity));
}

/** The identity headers present, each decoded (`Zo%C3%AB` → `Zoë`). */
function receivedIdentity(headers: IncomingHttpHeaders): Record<string, string> {
  const identity: Record<string, string> = {};
  for (const name of IDENTITY_HEADERS) {
    const value = headers[name.toLowerCase()];
    if (value !== undefined) identity[name] = decodeHeaderValue(Array.isArray(value) ? value.join(', ') : value);
  }
  return identity;
}

function decodeHeaderValue(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

function portalPage(entry: RecordedRequest, identity: Record<string, string>): string {
  const identityRows = IDENTITY_HEADERS.map((name) => tableRow(name, identity[name] ?? '(not sent)')).join('\n');
  const headerRows = [];
  for (let i = 0; i + 1 < entry.rawHeaders.length; i += 2) headerRows.push(tableRow(entry.rawHeaders[i] ?? '', entry.rawHeaders[i + 1] ?? ''));
  return htmlPage(
    'Legacy portal',
    `<main>
<h1>Legacy portal</h1>
<p>${escapeHtml(entry.method)} <code>${escapeHtml(entry.url)}</code></p>
<h2>Identity received</h2>
<table id="identity">
<thead><tr><th scope="col">Header</th><th scope="col">Value (decoded)</th></tr></thead>
<tbody>
${identityRows}
</tbody>
</table>
<h2>All request headers</h2>
<table id="headers">
<thead><tr><th scope="col">Header</th><th scope="col">Value as received</th></tr></thead>
<tbody>
${headerRows.join('\n')}
</tbody>
</table>
<p><a href="/oauth2/sign_out">Sign out</a></p>
</main>`,
  );
}

function tableRow(name: string, value: string): string {
  return `<tr><th scope="row">${escapeHtml(name)}</th><td>${escapeHtml(value)}</td></tr>`;
}

function pageOfExactly(bytes: number): string {
  const head = '<!DOCTYPE html><html><head><meta charset="utf-8"><title>1k</title></head><body><p>';
  const tail = '</p></body></html>\n';
  return head + 'x'.repeat(bytes - head.length - tail.length) + tail;
}

function boundedInteger(text: string | null, max: number): number {
  const value = Number.parseInt(text ?? '', 10);
  return Number.isFinite(value) ? Math.min(Math.max(value, 0), max) : 0;
}

function send(res: ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...headers, 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

/** Answers a WebSocket handshake on `/ws` by hand (RFC 6455 §4.2.2), then echoes every byte; leaves one on `/ws-silent` unanswered. */
function acceptWebSocket(req: IncomingMessage, socket: Duplex, head: Buffer, upgraded: Set<Duplex>): void {
  socket.on('error', () => socket.destroy());
  const key = req.headers['sec-websocket-key'];
  const path = new URL(req.url ?? '/', 'http://portal.invalid').pathname;
  if (path === '/ws-silent') {
    upgraded.add(socket);
    socket.on('close', () => upgraded.delete(socket));
    socket.on('end', () => socket.end());
    return;
  }
  if (path !== '/ws' || req.headers.upgrade?.toLowerCase() !== 'websocket' || !key) {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  upgraded.add(socket);
  socket.on('close', () => upgraded.delete(socket));
  const accept = createHash('sha1').update(key + WEBSOCKET_GUID).digest('base64');
  const answer = () => {
    if (socket.destroyed) return;
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    if (head.length > 0) socket.write(head);
    socket.pipe(socket);
  };
  const delayMs = Math.min(Number(new URL(req.url ?? '/', 'http://portal.invalid').searchParams.get('delayMs') ?? 0), MAX_DELAY_MS);
  if (delayMs > 0) setTimeout(answer, delayMs);
  else answer();
}
