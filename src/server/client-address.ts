import type { IncomingMessage } from 'node:http';
import { BlockList, isIP, type Socket } from 'node:net';

const IPV4_MAPPED = '::ffff:';
const IPV4_WITH_PORT = /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/;
const BRACKETED_IPV6 = /^\[([0-9A-Fa-f:.]+)\](?::\d+)?$/;

/**
 * The address of a request's client, for the audit log, the access log and the failed-login
 * throttle: the peer's address, unless the peer is one of `listen.trustedProxies` (an ingress in
 * front of the sidecar); then X-Forwarded-For is read from the right, past every trusted proxy, and
 * the first address that is not one is the client. A client can prepend what it likes to the
 * header, never past the proxies it went through. What the portal gets: see portalRequestHeaders.
 */
export class ClientAddresses {
  readonly #trusted: BlockList | undefined;
  /** Connection → whether its peer is a trusted proxy: asked for every request, answered once a connection. */
  readonly #peerTrusted = new WeakMap<Socket, boolean>();

  /** `trustedProxies`: addresses and CIDR ranges, IPv4 or IPv6 (validated by the configuration). */
  constructor(trustedProxies: readonly string[]) {
    if (trustedProxies.length === 0) return;
    this.#trusted = new BlockList();
    for (const entry of trustedProxies) addTrusted(this.#trusted, entry);
  }

  of(req: IncomingMessage): string {
    const peer = normalizeAddress(req.socket.remoteAddress ?? '') ?? '';
    if (!this.#isTrusted(peer)) return peer;
    const forwarded = req.headers['x-forwarded-for'];
    const hops = typeof forwarded === 'string' ? forwarded.split(',') : [];
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = normalizeAddress(hops[i]!.trim());
      // The proxy nearest the client wrote this entry: anything else here is a broken chain.
      if (hop === undefined) return peer;
      if (!this.#isTrusted(hop)) return hop;
    }
    return peer;
  }

  /** True when the request came straight from one of `listen.trustedProxies`. */
  isFromTrustedProxy(req: IncomingMessage): boolean {
    if (this.#trusted === undefined) return false;
    let trusted = this.#peerTrusted.get(req.socket);
    if (trusted === undefined) {
      trusted = this.#isTrusted(normalizeAddress(req.socket.remoteAddress ?? '') ?? '');
      this.#peerTrusted.set(req.socket, trusted);
    }
    return trusted;
  }

  #isTrusted(address: string): boolean {
    const type = isIP(address);
    return this.#trusted !== undefined && type !== 0 && this.#trusted.check(address, type === 4 ? 'ipv4' : 'ipv6');
  }
}

/** True for an address or CIDR range fit for `listen.trustedProxies`. */
export function isTrustedProxyEntry(entry: string): boolean {
  try {
    addTrusted(new BlockList(), entry);
    return true;
  } catch {
    return false;
  }
}

function addTrusted(list: BlockList, entry: string): void {
  const [address, prefix, ...rest] = entry.split('/');
  const type = isIP(address ?? '');
  if (type === 0 || rest.length > 0) throw new Error(`not an address or CIDR range: ${entry}`);
  const family = type === 4 ? 'ipv4' : 'ipv6';
  if (prefix === undefined) return list.addAddress(address!, family);
  const bits = Number(prefix);
  if (!/^\d{1,3}$/.test(prefix) || bits > (type === 4 ? 32 : 128)) throw new Error(`not an address or CIDR range: ${entry}`);
  list.addSubnet(address!, bits, family);
}

/** A bare IP address from a socket or an X-Forwarded-For entry (IPv4-mapped, with a port, bracketed), or undefined. */
function normalizeAddress(value: string): string | undefined {
  let address = value;
  if (address.startsWith(IPV4_MAPPED) && isIP(address.slice(IPV4_MAPPED.length)) === 4) address = address.slice(IPV4_MAPPED.length);
  address = IPV4_WITH_PORT.exec(address)?.[1] ?? BRACKETED_IPV6.exec(address)?.[1] ?? address;
  return isIP(address) === 0 ? undefined : address;
}
