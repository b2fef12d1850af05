import t from 'tap';
import { randomBytes } from 'node:crypto';
import { deriveKey, open, seal } from '../../src/session/crypto.js';

const key = randomBytes(32);
const plaintext = Buffer.from('{"accessToken":"secret"}');

t.test('a sealed value opens back, with or without associated data', async (t) => {
  t.same(open(key, seal(key, plaintext)), plaintext);
  t.same(open(key, seal(key, plaintext, Buffer.from('aad')), Buffer.from('aad')), plaintext);
  t.same(open(key, seal(key, Buffer.alloc(0))), Buffer.alloc(0));
  const large = randomBytes(1_000_000);
  t.same(open(key, seal(key, large)), large);
});

t.test('sealing twice gives different bytes (a random IV each time), without the plaintext', async (t) => {
  const first = seal(key, plaintext);
  t.not(first.toString('hex'), seal(key, plaintext).toString('hex'));
  t.notOk(first.includes(Buffer.from('secret')));
});

t.test('every altered bit, truncation or extension is refused', async (t) => {
  const sealed = seal(key, plaintext, Buffer.from('aad'));
  let accepted = 0;
  for (let byte = 0; byte < sealed.length; byte++) {
    for (let bit = 0; bit < 8; bit++) {
      const altered = Buffer.from(sealed);
      altered[byte]! ^= 1 << bit;
      if (open(key, altered, Buffer.from('aad')) !== null) accepted++;
    }
  }
  for (let length = 0; length < sealed.length; length++) {
    if (open(key, sealed.subarray(0, length), Buffer.from('aad')) !== null) accepted++;
  }
  if (open(key, Buffer.concat([sealed, Buffer.from([0])]), Buffer.from('aad')) !== null) accepted++;
  t.equal(accepted, 0);
});

t.test('another key or other associated data does not open it', async (t) => {
  const sealed = seal(key, plaintext, Buffer.from('session-1'));
  t.equal(open(randomBytes(32), sealed, Buffer.from('session-1')), null);
  t.equal(open(key, sealed, Buffer.from('session-2')), null);
  t.equal(open(key, sealed), null);
  t.equal(open(key, seal(key, plaintext), Buffer.from('session-1')), null);
});

t.test('garbage is refused without an exception', async (t) => {
  for (const garbage of [Buffer.alloc(0), Buffer.from([1]), Buffer.alloc(29, 1), Buffer.alloc(100_000, 1), randomBytes(64)]) {
    t.equal(open(key, garbage), null);
  }
  t.equal(open(Buffer.alloc(16), seal(key, plaintext)), null, 'a key of the wrong length');
});

t.test('derived keys are 32 bytes, stable, and differ by purpose and secret', async (t) => {
  const secret = 'a-test-secret-that-is-at-least-32-bytes-long';
  const ticketKey = deriveKey(secret, 'session-ticket');
  t.equal(ticketKey.length, 32);
  t.same(deriveKey(secret, 'session-ticket'), ticketKey);
  t.not(deriveKey(secret, 'session-index').toString('hex'), ticketKey.toString('hex'));
  t.not(deriveKey(secret + '!', 'session-ticket').toString('hex'), ticketKey.toString('hex'));
});
