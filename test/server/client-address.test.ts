import type { IncomingMessage } from 'node:http';
import t from 'tap';
import { ClientAddresses, isTrustedProxyEntry } from '../../src/server/client-address.js';

/** A request as the server sees it: its peer's address and its X-Forwarded-For. */
function requestFrom(peer: string, forwardedFor?: string): IncomingMessage {
  return { socket: { remoteAddress: peer }, headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor } } as unknown as IncomingMessage;
}

t.test('without trusted proxies the peer is the client, whatever X-Forwarded-For says', async (t) => {
  const addresses = new ClientAddresses([]);
  t.equal(addresses.of(requestFrom('10.0.0.7', '203.0.113.9')), '10.0.0.7');
  t.equal(addresses.of(requestFrom('::ffff:10.0.0.7')), '10.0.0.7', 'an IPv4-mapped peer is shown as IPv4');
});

t.test('behind trusted proxies X-Forwarded-For is read from the right, past every trusted one', async (t) => {
  const addresses = new ClientAddresses(['10.0.0.0/8', '192.0.2.1', 'fd00::/8']);
  const cases: Array<[peer: string, forwardedFor: string | undefined, client: string, why: string]> = [
    ['10.1.2.3', '203.0.113.9', '203.0.113.9', 'one ingress'],
    ['10.1.2.3', '198.51.100.1, 203.0.113.9', '203.0.113.9', 'what the client prepended is passed over'],
    ['10.1.2.3', '203.0.113.9, 192.0.2.1, 10.9.9.9', '203.0.113.9', 'a chain of trusted proxies'],
    ['::ffff:10.1.2.3', '203.0.113.9:51234', '203.0.113.9', 'an IPv4-mapped peer; an entry with its port'],
    ['fd00::1', '[2001:db8::5]:443', '2001:db8::5', 'IPv6, bracketed with a port'],
    ['10.1.2.3', undefined, '10.1.2.3', 'no header: the proxy itself'],
    ['10.1.2.3', '10.2.2.2, 10.3.3.3', '10.1.2.3', 'only trusted hops: the peer'],
    ['10.1.2.3', '203.0.113.9, not-an-address', '10.1.2.3', 'a broken chain: the peer'],
    ['203.0.113.50', '198.51.100.1', '203.0.113.50', 'an untrusted peer cannot name anyone'],
  ];
  for (const [peer, forwardedFor, client, why] of cases) t.equal(addresses.of(requestFrom(peer, forwardedFor)), client, why);
});

t.test('trusted proxy entries are addresses or CIDR ranges', async (t) => {
  for (const good of ['10.0.0.1', '10.0.0.0/8', '0.0.0.0/0', '::1', 'fd00::/8', '2001:db8::/128']) t.ok(isTrustedProxyEntry(good), good);
  for (const bad of ['', 'ingress.local', '10.0.0.0/33', 'fd00::/129', '10.0.0.0/8/1', '10.0.0.0/', '10.0.0.0/x', '300.1.1.1']) t.notOk(isTrustedProxyEntry(bad), bad);
});
