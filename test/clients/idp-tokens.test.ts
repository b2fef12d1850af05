import t from 'tap';
import { IdpTokenVerifier } from '../../src/clients/idp-tokens.js';
import { freePort } from '../support/free-port.js';

t.test('an unreachable identity provider refuses its tokens, says why once per try, and is tried again', async (t) => {
  const errors: unknown[] = [];
  const verifier = new IdpTokenVerifier({ issuer: `http://127.0.0.1:${await freePort()}`, audience: 'api', requiredRoles: [] }, Date.now, (error) => errors.push(error));
  for (let i = 1; i <= 2; i++) {
    const result = await verifier.verify('a.b.c');
    t.match(result, { ok: false, refusal: { code: 'idp_unavailable' } });
    t.equal(errors.length, i, 'discovery is tried again on the next token');
  }
});
