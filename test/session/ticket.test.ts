import t from 'tap';
import { sessionStoreKey, TicketCodec } from '../../src/session/ticket.js';

const codec = new TicketCodec('a-test-secret-that-is-at-least-32-bytes-long');
const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

t.test('an issued ticket survives its cookie encoding', async (t) => {
  const ticket = codec.issue();
  t.equal(ticket.id.length, 16);
  t.equal(ticket.key.length, 32);
  const cookie = codec.encode(ticket);
  t.match(cookie, /^v1\.[\w-]{64}\.[\w-]{43}$/);
  const decoded = codec.decode(cookie);
  t.same(decoded?.id, ticket.id);
  t.same(decoded?.key, ticket.key);
});

t.test('issued tickets are random', async (t) => {
  const ids = new Set(Array.from({ length: 100 }, () => codec.issue().id.toString('hex')));
  t.equal(ids.size, 100);
});

t.test('a cookie with any character changed is refused', async (t) => {
  const cookie = codec.encode(codec.issue());
  let accepted = 0;
  for (let position = 0; position < cookie.length; position++) {
    for (const replacement of BASE64URL + '.=+/ ') {
      if (replacement === cookie[position]) continue;
      if (codec.decode(cookie.slice(0, position) + replacement + cookie.slice(position + 1)) !== null) accepted++;
    }
  }
  t.equal(accepted, 0);
});

t.test('a cookie with segments removed, swapped, added or re-spelled is refused', async (t) => {
  const cookie = codec.encode(codec.issue());
  const [version, payload, signature] = cookie.split('.') as [string, string, string];
  const other = codec.encode(codec.issue()).split('.') as [string, string, string];
  for (const variant of [
    `${version}.${payload}`,
    `${version}.${payload}.`,
    `${payload}.${signature}`,
    `${version}.${signature}.${payload}`,
    `${version}.${payload}.${other[2]}`,
    `${version}.${other[1]}.${signature}`,
    `${cookie}.extra`,
    `${cookie}=`,
    ` ${cookie}`,
    `V1.${payload}.${signature}`,
    `v2.${payload}.${signature}`,
    cookie.slice(0, -1),
  ]) {
    t.equal(codec.decode(variant), null, variant);
  }
});

t.test('a cookie signed with another secret is refused', async (t) => {
  const foreign = new TicketCodec('another-secret-that-is-at-least-32-bytes');
  t.equal(codec.decode(foreign.encode(foreign.issue())), null);
});

t.test('garbage is refused without an exception', async (t) => {
  const sameLength = (char: string) => `v1.${char.repeat(64)}.${char.repeat(43)}`;
  for (const garbage of ['', '.', 'v1.', 'v1..', 'x'.repeat(1_000_000), sameLength('!'), sameLength('é'), sameLength('\u0000'), sameLength('A')]) {
    t.equal(codec.decode(garbage), null, JSON.stringify(garbage.slice(0, 20)));
  }
});

t.test('store keys name a ticket without revealing its id', async (t) => {
  const ticket = codec.issue();
  const key = sessionStoreKey(ticket);
  t.match(key, /^session:[\w-]{43}$/);
  t.equal(sessionStoreKey({ id: Buffer.from(ticket.id), key: ticket.key }), key);
  t.notOk(key.includes(ticket.id.toString('base64url')) || key.includes(ticket.id.toString('hex')));
  t.not(sessionStoreKey(codec.issue()), key);
});
