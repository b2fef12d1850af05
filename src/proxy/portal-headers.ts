import type { IncomingHttpHeaders } from 'node:http';

const CONNECTION = 'connection';
const UPGRADE = 'upgrade';
/**
 * Connection-level headers (RFC 9110 §7.6.1): they describe one hop, so a proxy neither passes them
 * on nor acts on them for the next hop — and neither does it pass the headers that `Connection` names.
 */
const HOP_BY_HOP = new Set([CONNECTION, 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', UPGRADE]);
/** Node answers `Expect: 100-continue` itself: the portal gets the body without being asked for it. */
const ANSWERED_BY_THE_SIDECAR = 'expect';
/**
 * Headers that make IIS (URL Rewrite) or a web framework serve another path than the request line
 * names: the sidecar decided on that path (public route or not), so the portal must not see another.
 */
const PATH_OVERRIDES = new Set(['x-original-url', 'x-rewrite-url']);
/**
 * Headers in which proxies tell the next hop who the client is, which URL it asked for or which
 * certificate it showed (every `X-Forwarded-*` too). Sent by a peer that is not a trusted proxy, they
 * are the client's own say (`X-Real-IP: 10.0.0.1`, `X-Forwarded-Prefix: /admin`): the portal gets
 * none of them, only the X-Forwarded-For/-Proto/-Host the sidecar sets itself. Spelled with `_`
 * (which CGI-style portals read as the `-` spelling) they come from no proxy: dropped whoever sends them.
 */
const FORWARDING_PREFIX = 'x-forwarded-';
const CLIENT_DESCRIPTIONS = new Set([
  'forwarded',
  'x-forwarded',
  'forwarded-for',
  'x-real-ip',
  'x-client-ip',
  'client-ip',
  'true-client-ip',
  'x-cluster-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-original-host',
  'x-host',
  'front-end-https',
  'x-url-scheme',
  'x-scheme',
  'x-arr-ssl',
  'x-arr-clientcert',
  'x-client-cert',
  'x-ssl-client-cert',
  'ssl-client-cert',
  'x-original-proto',
  'x-original-for',
  'x-original-forwarded-for',
  'x-originating-ip',
  'x-remote-ip',
  'x-remote-addr',
  'proxy-client-ip',
  'wl-proxy-client-ip',
  'x-real-port',
]);
/** Node frames a request body for the next hop from these: they stay whatever `Connection` says. */
const BODY_FRAMING = new Set(['transfer-encoding', 'content-length']);

export interface PortalHeaderChanges {
  /** The Cookie header the portal gets (the client's without the sidecar's own cookies); undefined for none. */
  cookie: string | undefined;
  /** The sidecar's headers (identity, X-Auth-Method, …): set after the client's, so they win. */
  added: Readonly<Record<string, string>>;
  /** Client headers the portal must not get (a machine credential the sidecar has verified). */
  removed?: readonly string[];
  /** A WebSocket upgrade keeps `Upgrade` and sends `Connection: Upgrade`: the portal must see them. */
  upgrade?: boolean;
  /** The request came straight from a trusted proxy (`listen.trustedProxies`): its forwarding headers stay. */
  fromTrustedProxy?: boolean;
}

/**
 * The headers of a request as the portal receives them: the client's (spoofable ones already
 * stripped), without hop-by-hop headers, `Expect`, path overrides and — unless a trusted proxy sent
 * them — forwarding headers, with the changes. Built as a new object rather than edited
 * in place: deleting from Node's header object turns it into a slow dictionary for every later read,
 * and for the header list sent to the portal. `Host` always stays.
 */
export function portalRequestHeaders(incoming: IncomingHttpHeaders, changes: PortalHeaderChanges): IncomingHttpHeaders {
  const named = connectionOptions(incoming.connection);
  const upgrade = changes.upgrade === true;
  const headers: IncomingHttpHeaders = {};
  for (const name in incoming) {
    // `X_Original_URL` is `X-Original-URL` to a CGI-style portal; from a proxy it never comes.
    const dashed = name.includes('_') ? name.replaceAll('_', '-') : name;
    if (name === 'cookie' || PATH_OVERRIDES.has(dashed) || changes.removed?.includes(name)) continue;
    if (endsAtTheSidecar(name, named, upgrade)) continue;
    if (describesTheClient(dashed) && (!changes.fromTrustedProxy || dashed !== name)) continue;
    headers[name] = incoming[name];
  }
  // An upgrade asks the portal for it, and for nothing else of the connection.
  if (upgrade) headers.connection = 'Upgrade';
  if (changes.cookie) headers.cookie = changes.cookie;
  for (const name in changes.added) headers[name] = changes.added[name];
  return headers;
}

function endsAtTheSidecar(name: string, named: Set<string> | undefined, upgrade: boolean): boolean {
  if (BODY_FRAMING.has(name) || name === 'host' || (upgrade && name === UPGRADE)) return false;
  return HOP_BY_HOP.has(name) || name === ANSWERED_BY_THE_SIDECAR || named?.has(name) === true;
}

function describesTheClient(name: string): boolean {
  return name.startsWith(FORWARDING_PREFIX) || CLIENT_DESCRIPTIONS.has(name);
}

/** A response's raw header list (names as sent, repeated headers kept) without hop-by-hop headers. */
export function endToEndHeaders(rawHeaders: readonly string[]): string[] {
  const named = connectionOptions(rawConnectionHeader(rawHeaders));
  const headers: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (!HOP_BY_HOP.has(name) && !named?.has(name)) headers.push(rawHeaders[i]!, rawHeaders[i + 1]!);
  }
  return headers;
}

/**
 * The `Connection` values of a raw header list, joined. Read from the raw list: the message's
 * header object would be built for every response only to find this one header.
 */
function rawConnectionHeader(rawHeaders: readonly string[]): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === CONNECTION.length && name.toLowerCase() === CONNECTION) value = value === undefined ? rawHeaders[i + 1] : `${value}, ${rawHeaders[i + 1]}`;
  }
  return value;
}

/** The header names listed in `Connection`; none for the usual `keep-alive` or `close`. */
function connectionOptions(connection: string | undefined): Set<string> | undefined {
  if (!connection || connection === 'keep-alive' || connection === 'close') return undefined;
  return new Set(connection.split(',').map((option) => option.trim().toLowerCase()));
}
