import t from 'tap';
import { IdpTokenVerifier } from '../../src/clients/idp-tokens.js';
import { freePort } from '../support/free-port.js';

t.test('an unreachable identity provider refuses its tokens, says why once per try, and is tried again 10 s later', async (t) => {
  const errors: unknown[] = [];
  let now = Date.now();
  const verifier = new IdpTokenVerifier({ issuer: `http://127.0.0.1:${await freePort()}`, audience: 'api', requiredRoles: [] }, () => now, (error) => errors.push(error));
  const unavailable = { ok: false, refusal: { code: 'idp_unavailable' } };
  t.match(await Promise.all([verifier.verify('a.b.c'), verifier.verify('d.e.f')]), [unavailable, unavailable]);
  t.equal(errors.length, 1, 'tokens that waited for the same discovery: said once');
  now += 9_000;
  t.match(await verifier.verify('a.b.c'), unavailable);
  t.equal(errors.length, 1, 'within 10 s: refused at once, the provider not asked');
  now += 1_000;
  t.match(await verifier.verify('a.b.c'), unavailable);
  t.equal(errors.length, 2, 'then discovery is tried again');
});
