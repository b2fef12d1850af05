import { createServer } from 'node:http';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import t, { type Test } from 'tap';
import { IdpTokenVerifier, type IdpTokenOptions } from '../../src/clients/idp-tokens.js';
import { bearerRefusals } from '../../src/clients/reasons.js';
import { listen, stopServer } from '../support/free-port.js';

// Key rotation at the identity provider (issue 3), through real HTTP: a small provider of our own
// serves discovery and a JWKS whose keys each test changes while the verifier runs.

const AUDIENCE = 'urn:portal:api';
const noMatchingKey = bearerRefusals.rejected('ERR_JWKS_NO_MATCHING_KEY', 'no applicable key found in the JSON Web Key Set');
/** No cooldown between refetches, so that a rotation shows without waiting jose's 30 s. */
const NO_COOLDOWN: IdpTokenOptions = { jwksCooldownMs: 0 };

interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function signingKey(kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
}

interface Provider {
  issuer: string;
  /** The keys `/jwks` lists now. */
  published: SigningKey[];
  /** `/jwks` answers 503 instead. */
  jwksFailing: boolean;
  readonly requests: { discovery: number; jwks: number };
  stop(): Promise<void>;
  restart(): Promise<void>;
  /** A token signed with `key`, issued at `at` (ms) and valid for 5 minutes, with `claims` added. */
  token(key: SigningKey, clientId?: string, withKid?: boolean, at?: number, claims?: Record<string, unknown>): Promise<string>;
}

async function startProvider(t: Test): Promise<Provider> {
  const requests = { discovery: 0, jwks: 0 };
  const server = createServer((req, res) => {
    const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (req.url === '/.well-known/openid-configuration') {
      requests.discovery++;
      json(200, { issuer: provider.issuer, jwks_uri: `${provider.issuer}/jwks` });
    } else if (req.url === '/jwks') {
      requests.jwks++;
      if (provider.jwksFailing) json(503, { error: 'temporarily_unavailable' });
      else json(200, { keys: provider.published.map((key) => key.publicJwk) });
    } else json(404, {});
  });
  const port = await listen(server, 0, '127.0.0.1');
  const provider: Provider = {
    issuer: `http://127.0.0.1:${port}`,
    published: [],
    jwksFailing: false,
    requests,
    stop: () => stopServer(server),
    restart: async () => void (await listen(server, port, '127.0.0.1')),
    token: (key, clientId = 'nightly-job', withKid = true, at = Date.now(), claims = {}) =>
      new SignJWT({ client_id: clientId, roles: ['Portal.Api'], ...claims })
        .setProtectedHeader({ alg: 'ES256', ...(withKid && { kid: key.kid }), typ: 'at+jwt' })
        .setIssuer(provider.issuer)
        .setAudience(AUDIENCE)
        .setIssuedAt(Math.floor(at / 1000))
        .setExpirationTime(Math.floor(at / 1000) + 300)
        .sign(key.privateKey),
  };
  t.teardown(() => (server.listening ? stopServer(server) : undefined));
  return provider;
}

function verifierFor(provider: Provider, options?: IdpTokenOptions, keyErrors: unknown[] = [], clock = Date.now): IdpTokenVerifier {
  return new IdpTokenVerifier({ issuer: provider.issuer, audience: AUDIENCE, requiredRoles: ['Portal.Api'] }, clock, (error) => keyErrors.push(error), options);
}

/**
 * A provider with two keys, publishing `a` only, and a verifier of its tokens on a clock the test
 * moves on; `tokenBy` signs a token issued at that clock's time.
 */
async function clockedCase(t: Test, options?: IdpTokenOptions) {
  const provider = await startProvider(t);
  const [a, b] = await Promise.all([signingKey('key-a'), signingKey('key-b')]);
  provider.published = [a];
  const keyErrors: unknown[] = [];
  const clock = testClock();
  const verifier = verifierFor(provider, options, keyErrors, clock.now);
  const tokenBy = (key: SigningKey) => provider.token(key, undefined, true, clock.now());
  return { provider, a, b, keyErrors, clock, verifier, tokenBy };
}

/** A clock the test moves on. */
function testClock(): { now: () => number; advance(ms: number): void } {
  let now = Date.now();
  return { now: () => now, advance: (ms) => void (now += ms) };
}

t.test('one fetch of the key set serves many verifications', async (t) => {
  const provider = await startProvider(t);
  const a = await signingKey('key-a');
  provider.published = [a];
  const verifier = verifierFor(provider);
  for (let i = 0; i < 20; i++) {
    t.match(await verifier.verify(await provider.token(a, `job-${i}`)), { ok: true, clientId: `job-${i}` });
  }
  t.same(provider.requests, { discovery: 1, jwks: 1 });
});

t.test('the provider rotates to a new key: its first token fetches the key set again and is accepted', async (t) => {
  const provider = await startProvider(t);
  const [a, b] = await Promise.all([signingKey('key-a'), signingKey('key-b')]);
  provider.published = [a];
  const verifier = verifierFor(provider, NO_COOLDOWN);
  t.match(await verifier.verify(await provider.token(a)), { ok: true });
  t.equal(provider.requests.jwks, 1);

  provider.published = [a, b];
  t.match(await verifier.verify(await provider.token(b)), { ok: true, clientId: 'nightly-job' }, 'an unknown kid fetches the key set again');
  t.equal(provider.requests.jwks, 2);
  for (const key of [a, b, b, a]) t.match(await verifier.verify(await provider.token(key)), { ok: true });
  t.equal(provider.requests.jwks, 2, 'known keys, old and new, need no further fetch');
});

t.test('a retired key is refused once the key set is fetched again; a kid the provider never published is refused', async (t) => {
  const provider = await startProvider(t);
  const [a, b, stranger] = await Promise.all([signingKey('key-a'), signingKey('key-b'), signingKey('key-x')]);
  provider.published = [a, b];
  const verifier = verifierFor(provider, NO_COOLDOWN);
  t.match(await verifier.verify(await provider.token(a)), { ok: true });

  provider.published = [b];
  t.match(await verifier.verify(await provider.token(a)), { ok: true }, 'the cached key set still holds the retired key: nothing made it fetch again yet');
  t.equal(provider.requests.jwks, 1);

  t.same(await verifier.verify(await provider.token(stranger)), { ok: false, refusal: noMatchingKey }, 'an unknown kid, unknown after the refetch too');
  t.equal(provider.requests.jwks, 2, 'the unknown kid fetched the key set again');

  t.same(await verifier.verify(await provider.token(a)), { ok: false, refusal: noMatchingKey }, 'the retired key, gone from the refreshed key set');
  t.match(await verifier.verify(await provider.token(b)), { ok: true });
});

t.test('a token without kid is verified against each key of the set that could have signed it', async (t) => {
  const provider = await startProvider(t);
  const [a, b, stranger] = await Promise.all([signingKey('key-a'), signingKey('key-b'), signingKey('key-x')]);
  provider.published = [a, b];
  const verifier = verifierFor(provider);
  t.match(await verifier.verify(await provider.token(b, 'job-b', false)), { ok: true, clientId: 'job-b' }, 'signed by the second of two ES256 keys');
  t.match(await verifier.verify(await provider.token(a, 'job-a', false)), { ok: true, clientId: 'job-a' }, 'and by the first');
  t.match(await verifier.verify(await provider.token(stranger, 'job-x', false)), { ok: false, refusal: { code: 'signature' } }, 'by none of them: refused as a bad signature');
});

t.test("a token issued for a signed-in user (delegated) is not the application's own: refused", async (t) => {
  const provider = await startProvider(t);
  const a = await signingKey('key-a');
  provider.published = [a];
  const verifier = verifierFor(provider);
  const delegated = { ok: false, refusal: bearerRefusals.delegated, clientId: 'spa' };
  t.same(await verifier.verify(await provider.token(a, 'spa', true, Date.now(), { scp: 'Portal.Read', sub: 'user-1' })), delegated, "Azure's scp claim");
  t.same(await verifier.verify(await provider.token(a, 'spa', true, Date.now(), { idtyp: 'user' })), delegated, 'idtyp: user');
  t.match(await verifier.verify(await provider.token(a, 'spa', true, Date.now(), { idtyp: 'app' })), { ok: true, clientId: 'spa' }, "idtyp: app, an application's own");
  t.same(await verifier.verify(await provider.token(a, 'spa', true, Date.now(), { sub: 'user-1', nonce: 'n-1' })), delegated, 'an ID token (nonce)');
  for (const sub of ['spa', 'spa@clients', '5f0c8a1e-service-account', 'sp-object-id']) {
    t.match(await verifier.verify(await provider.token(a, 'spa', true, Date.now(), { sub })), { ok: true }, `an application's own, whatever its provider names it: ${sub}`);
  }
});

t.test('with the production cooldown, unknown kids fetch the key set at most once per 30 s', async (t) => {
  const provider = await startProvider(t);
  const [a, b] = await Promise.all([signingKey('key-a'), signingKey('key-b')]);
  provider.published = [a];
  const verifier = verifierFor(provider);
  t.match(await verifier.verify(await provider.token(a)), { ok: true });

  provider.published = [a, b];
  for (let i = 0; i < 5; i++) t.same(await verifier.verify(await provider.token(b)), { ok: false, refusal: noMatchingKey }, 'within 30 s of the last fetch');
  t.equal(provider.requests.jwks, 1, 'a flood of unknown kids does not reach the provider');
});

t.test('the key set cannot be fetched during a rotation: refused as idp_unavailable at once, said why, recovered afterwards', async (t) => {
  const { provider, a, b, keyErrors, clock, verifier } = await clockedCase(t, NO_COOLDOWN);
  t.match(await verifier.verify(await provider.token(a)), { ok: true });
  provider.published = [a, b];

  const tokenB = await provider.token(b);
  provider.jwksFailing = true;
  t.same(await verifier.verify(tokenB), { ok: false, refusal: bearerRefusals.idpUnavailable }, 'the JWKS endpoint answers 503');
  t.equal(provider.requests.jwks, 2);
  t.same(await verifier.verify(tokenB), { ok: false, refusal: bearerRefusals.idpUnavailable }, 'again, within 10 s');
  t.equal(provider.requests.jwks, 2, 'not asked again so soon: the token is answered at once');
  clock.advance(10_000);
  await provider.stop();
  t.same(await verifier.verify(tokenB), { ok: false, refusal: bearerRefusals.idpUnavailable }, '10 s later the provider is down');
  t.match(keyErrors, [{ message: /could not be fetched: it answered 503/ }, { message: /could not be fetched: fetch failed/ }], 'each failed fetch is said, once');
  t.match(await verifier.verify(await provider.token(a)), { ok: true }, 'a key already in hand still verifies meanwhile');

  await provider.restart();
  provider.jwksFailing = false;
  clock.advance(10_000);
  t.match(await verifier.verify(tokenB), { ok: true }, 'the provider is back');
  t.equal(provider.requests.discovery, 1, 'discovery is not repeated');
});

t.test('keys older than 10 minutes are fetched again in the background; a fetch that fails keeps the keys in hand', async (t) => {
  const { provider, a, b, keyErrors, clock, verifier, tokenBy } = await clockedCase(t);
  t.match(await verifier.verify(await tokenBy(a)), { ok: true });

  provider.jwksFailing = true;
  clock.advance(10 * 60_000);
  t.match(await verifier.verify(await tokenBy(a)), { ok: true }, 'due for a refresh, the keys in hand still verify, without waiting for it');
  await waitFor(() => keyErrors.length === 1);
  t.equal(provider.requests.jwks, 2, 'the refresh was tried');
  t.match(keyErrors, [{ message: /could not be fetched: it answered 503/ }], 'and its failure said');
  t.match(await verifier.verify(await tokenBy(a)), { ok: true }, 'after the failed refresh, the keys in hand still verify');
  t.equal(provider.requests.jwks, 2, 'a failed refresh is not repeated within 10 s');

  provider.jwksFailing = false;
  provider.published = [b];
  clock.advance(10_000);
  t.match(await verifier.verify(await tokenBy(a)), { ok: true }, 'the next refresh runs in the background too');
  await waitFor(() => provider.requests.jwks === 3);
  t.match(await verifier.verify(await tokenBy(b)), { ok: true }, 'once it is done the new key verifies');
  t.same(await verifier.verify(await tokenBy(a)), { ok: false, refusal: noMatchingKey }, 'and the key the provider withdrew no longer does');
  t.equal(provider.requests.jwks, 3);
});

t.test('a provider whose key set cannot be fetched from the start: tokens refused at once while it is retried every 10 s', async (t) => {
  const { provider, a, keyErrors, clock, verifier } = await clockedCase(t);
  provider.jwksFailing = true;
  const tokens = await Promise.all([1, 2, 3, 4, 5].map(() => provider.token(a)));
  const answers = await Promise.all(tokens.map((token) => verifier.verify(token)));
  t.same(answers, tokens.map(() => ({ ok: false, refusal: bearerRefusals.idpUnavailable })));
  t.same(await verifier.verify(tokens[0]!), { ok: false, refusal: bearerRefusals.idpUnavailable }, 'and one more, after');
  t.equal(provider.requests.jwks, 1, 'six tokens, one request');
  t.equal(keyErrors.length, 1, 'its failure said once, not once per token that waited for it');
  provider.jwksFailing = false;
  clock.advance(10_000);
  t.match(await verifier.verify(await provider.token(a)), { ok: true }, 'retried 10 s later');
});

t.test('keys the provider has not served again for a day are not used any more', async (t) => {
  const { provider, a, verifier, clock, tokenBy } = await clockedCase(t);
  t.match(await verifier.verify(await tokenBy(a)), { ok: true });
  provider.jwksFailing = true;
  clock.advance(23 * 60 * 60_000);
  t.match(await verifier.verify(await tokenBy(a)), { ok: true }, 'after 23 hours of failed refreshes, still used');
  clock.advance(60 * 60_000);
  t.same(await verifier.verify(await tokenBy(a)), { ok: false, refusal: bearerRefusals.idpUnavailable }, 'after 24, refused as idp_unavailable');
  provider.jwksFailing = false;
  clock.advance(10_000);
  t.match(await verifier.verify(await tokenBy(a)), { ok: true }, 'once the provider serves its keys again, accepted');
});

/** Resolves once `done()` holds (a background fetch finished); fails the test after 2 s. */
async function waitFor(done: () => boolean): Promise<void> {
  for (let waited = 0; !done(); waited += 10) {
    if (waited > 2_000) throw new Error('timed out waiting for the background fetch');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
