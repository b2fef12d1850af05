import { decodeJwt, decodeProtectedHeader } from 'jose';
import t from 'tap';
import { freePort } from '../support/free-port.js';
import { request } from '../support/http.js';
import { parseExposition } from '../support/metrics.js';
import { auditEvents, startStack } from '../support/stack.js';

const API = 'urn:portal:api';
const OTHER_API = 'urn:other:api';
const BEARER = 'Bearer token validation failed: ';

t.test("the identity provider's JWT access tokens (clients.idpTokens)", async (t) => {
  const idpPort = await freePort();
  const issuer = `http://127.0.0.1:${idpPort}`;
  const machine = (clientId: string, roles: string[]) => ({ clientId, clientSecret: `${clientId}-secret`, redirectUris: [], grantTypes: ['client_credentials'], roles });
  const stack = await startStack({
    idp: { port: idpPort, apiResources: [API, OTHER_API], clients: [machine('idp-job', ['Portal.Api', 'Reports.Read']), machine('idp-no-role', [])] },
    config: { clients: { idpTokens: { issuer, audience: API, requiredRoles: ['Portal.Api'], routes: ['^/api/'] } } },
  });
  t.teardown(() => stack.stop());

  const idpToken = async (clientId: string, resource?: string) => {
    const form = new URLSearchParams({ grant_type: 'client_credentials', ...(resource ? { resource } : {}) });
    const answer = await request(stack.idp.url('/token'), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${clientId}:${clientId}-secret`).toString('base64')}` },
      body: form.toString(),
    });
    if (answer.status !== 200) throw new Error(`the IdP answered ${answer.status}: ${answer.body}`);
    return (JSON.parse(answer.body) as { access_token: string }).access_token;
  };
  const call = (token: string, path = '/api/items') => request(stack.sidecar.url + path, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
  const lastReason = () => auditEvents(stack).at(-1)?.reason;

  t.test('the test IdP issues RFC 9068 JWT access tokens with roles for an API resource', async (t) => {
    const token = await idpToken('idp-job', API);
    t.equal(decodeProtectedHeader(token).typ, 'at+jwt');
    t.match(decodeJwt(token), { iss: issuer, aud: API, client_id: 'idp-job', roles: ['Portal.Api', 'Reports.Read'] });
  });

  t.test('a valid token reaches the portal as its client, with its roles', async (t) => {
    const timedRequests = async (endpoint: string) =>
      parseExposition((await request(stack.sidecar.metricsUrl + '/metrics')).body).value('oidc_sidecar_idp_request_duration_seconds_count', { endpoint });
    const before = { discovery: await timedRequests('discovery'), jwks: await timedRequests('jwks') };
    const answer = await call(await idpToken('idp-job', API));
    t.equal(answer.status, 200);
    t.notOk(answer.headers['set-cookie']);
    t.match(stack.portal.requests.at(-1)!.headers, { 'x-forwarded-client-id': 'idp-job', 'x-auth-method': 'bearer', 'x-forwarded-roles': 'Portal.Api,Reports.Read' });
    t.notOk(stack.portal.requests.at(-1)!.headers.authorization);
    t.equal(await timedRequests('discovery'), before.discovery + 1, "finding the token's keys is timed: the provider's metadata");
    t.equal(await timedRequests('jwks'), before.jwks + 1, 'and its key set');
  });

  t.test('refused: missing role, other audience, opaque token, route outside idpTokens.routes', async (t) => {
    const cases: Array<[string, () => Promise<string>, string, RegExp]> = [
      ['a client without the required role', () => idpToken('idp-no-role', API), '/api/items', /lacks required roles: Portal\.Api/],
      ['a token for another API', () => idpToken('idp-job', OTHER_API), '/api/items', /"aud" claim/],
      ['an opaque token', () => idpToken('idp-job'), '/api/items', /not a well-formed JWT/],
      ['a path outside idpTokens.routes', () => idpToken('idp-job', API), '/odata/cases', /not allowed on this path/],
    ];
    for (const [name, token, path, reason] of cases) {
      const answer = await call(await token(), path);
      t.equal(answer.status, 401, name);
      t.match(JSON.parse(answer.body), { error: 'invalid_client' }, name);
      t.match(lastReason(), new RegExp(`^${BEARER}.*${reason.source}`), name);
    }
  });
});
