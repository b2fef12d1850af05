import type { IncomingHttpHeaders } from 'node:http';

/**
 * Connection-level headers (RFC 9110 §7.6.1): they describe one hop, so a proxy neither passes them
 * on nor acts on them for the next hop — and neither does it pass the headers that `Connection` names.
 */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/**
 * Deletes the hop-by-hop headers of a request bound for the portal (not an upgrade: that one needs
 * its `Connection` and `Upgrade`). Run before the sidecar adds its own headers, so that a client's
 * `Connection: x-forwarded-user` cannot take one of them away. Node frames the body itself:
 * `transfer-encoding` stays for it, and `Host` is never a hop-by-hop header.
 */
export function deleteRequestHopByHopHeaders(headers: IncomingHttpHeaders): void {
  const named = connectionOptions(headers.connection);
  for (const name in headers) {
    if (name === 'transfer-encoding' || name === 'host') continue;
    if (HOP_BY_HOP.has(name) || named?.has(name)) delete headers[name];
  }
}

/** A response's raw header list (names as sent, repeated headers kept) without hop-by-hop headers. */
export function endToEndHeaders(rawHeaders: readonly string[], connection: string | undefined): string[] {
  const named = connectionOptions(connection);
  const headers: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (!HOP_BY_HOP.has(name) && !named?.has(name)) headers.push(rawHeaders[i]!, rawHeaders[i + 1]!);
  }
  return headers;
}

/** The header names listed in `Connection`; none for the usual `keep-alive` or `close`. */
function connectionOptions(connection: string | undefined): Set<string> | undefined {
  if (!connection || connection === 'keep-alive' || connection === 'close') return undefined;
  return new Set(connection.split(',').map((option) => option.trim().toLowerCase()));
}
