import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import t, { type Test } from 'tap';
import { hashSecret } from '../../src/clients/index.js';
import { certificateClaims, makeCertificate, signJwt, type JwtHeader } from '../support/applications.js';
import { listen, stopServer } from '../support/free-port.js';
import { request, type HttpAnswer } from '../support/http.js';
import { scrape } from '../support/metrics.js';
import { auditEvents, signIn, startStack, type Stack } from '../support/stack.js';

const INVALID_CLIENT = {
  error: 'invalid_client',
  error_description: 'Client authentication failed, e.g. unknown client, no client authentication included, or unsupported authentication method',
};
const CERT = 'Certificate token validation failed: ';
const JSON_ACCEPT = { accept: 'application/json' };
const REPORTING_SECRET = 'reporting: secret+with%special chars';
const SCIM_SECRET = 'scim-sync-secret';
const TOKEN_HEADER = 'X-ClientCertificate-Token';

t.test('machine clients', async (t) => {
  const dir = t.testdir();
  const reporting = await makeCertificate(dir, 'reporting', 'reporting-job.example.com');
  const der = await makeCertificate(dir, 'der', 'der-app');
  // The attacker's certificate even names the same CN: only the registered key counts.
  const attacker = await makeCertificate(dir, 'attacker', 'reporting-job.example.com');
  const hmacKey = randomBytes(48).toString('base64url');
  await writeFile(join(dir, 'hmac-app.hmac'), hmacKey + '\n');
  let offsetMs = 0;
  const clock = () => Date.now() + offsetMs;
  const stack = await startStack({
    clock,
    config: {
      applications: [
        {
          clientId: 'reporting-job',
          grantTypes: ['client_credentials', 'client_certificate'],
          clientSecretHash: await hashSecret(REPORTING_SECRET),
          certificateFile: reporting.pemFile,
          routes: ['^/odata/'],
          scopes: ['odata.read', 'odata.write'],
        },
        { clientId: 'der-app', grantTypes: ['client_certificate'], certificateFile: der.derFile, routes: ['^/odata/'] },
        { clientId: 'hmac-app', grantTypes: ['client_certificate'], hmacSecretFile: join(dir, 'hmac-app.hmac'), routes: ['^/odata/'] },
        { clientId: 'scim-sync', grantTypes: ['client_credentials'], clientSecretHash: await hashSecret(SCIM_SECRET), routes: ['^/scim/'] },
      ],
    },
  });
  t.teardown(() => stack.stop());
  const url = (path: string) => stack.sidecar.url + path;
  const now = () => Math.floor(clock() / 1000);
  const lastPortalRequest = () => stack.portal.requests.at(-1)!;
  const reportingClaims = () => certificateClaims('reporting-job', reporting.commonName, now());
  const reportingToken = (claims: Record<string, unknown> = reportingClaims(), header: JwtHeader = { alg: 'RS256' }) => signJwt(header, claims, reporting.privateKey);

  /** The request is refused with the one generic answer, never reaches the portal, and each reason is audited. */
  async function expectRefused(t: Test, headers: Record<string, string>, reasons: string | string[], path = '/odata/data/cases') {
    const portalRequests = stack.portal.requests.length;
    const auditCount = auditEvents(stack).length;
    const answer = await request(url(path), { headers: { ...JSON_ACCEPT, ...headers } });
    t.equal(answer.status, 401);
    t.same(JSON.parse(answer.body), INVALID_CLIENT, 'the generic invalid_client answer');
    t.equal(answer.headers['www-authenticate'], `Bearer realm="${new URL(stack.config.publicUrl).origin}"`);
    t.equal(stack.portal.requests.length, portalRequests, 'the portal is not reached');
    const failures = auditEvents(stack).slice(auditCount).filter((event) => event.event === 'api_auth_failed');
    t.same(failures.map((event) => event.reason), [reasons].flat(), 'the precise reason is audited');
    return failures;
  }

  async function expectAccepted(t: Test, headers: Record<string, string>, path = '/odata/data/cases'): Promise<HttpAnswer> {
    const answer = await request(url(path), { headers: { ...JSON_ACCEPT, ...headers } });
    t.equal(answer.status, 200, 'accepted');
    if (answer.status !== 200) t.comment(answer.body);
    return answer;
  }

  async function requestToken(form: Record<string, string>, headers: Record<string, string> = {}) {
    const answer = await request(url('/oauth2/token'), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams(form).toString(),
    });
    return { ...answer, json: JSON.parse(answer.body) as Record<string, unknown> };
  }

  const basic = (id: string, secret: string) => ({ authorization: `Basic ${Buffer.from(`${encodeForm(id)}:${encodeForm(secret)}`).toString('base64')}` });

  async function accessToken(clientId = 'reporting-job', secret = REPORTING_SECRET): Promise<string> {
    const answer = await requestToken({ grant_type: 'client_credentials' }, basic(clientId, secret));
    if (answer.status !== 200) throw new Error(`token endpoint answered ${answer.status}: ${answer.body}`);
    return answer.json.access_token as string;
  }

  t.test('a valid client-certificate token reaches the portal as the application, without the token', async (t) => {
    const answer = await expectAccepted(t, { [TOKEN_HEADER]: reportingToken() });
    t.notOk(answer.headers['set-cookie'], 'no cookie for a machine request');
    const received = lastPortalRequest().headers;
    t.equal(received['x-forwarded-client-id'], 'reporting-job');
    t.equal(received['x-auth-method'], 'client-certificate');
    t.equal(received['x-forwarded-roles'], 'odata.read,odata.write', "the application's scopes");
    t.notOk(received['x-clientcertificate-token'], 'the credential is not passed on');
    t.notOk(received['x-forwarded-user']);
  });

  t.test('every allowed algorithm works with its registered key: RS* by PEM or DER certificate, HS* by the secret file', async (t) => {
    for (const alg of ['RS256', 'RS384', 'RS512']) {
      await expectAccepted(t, { [TOKEN_HEADER]: reportingToken(reportingClaims(), { alg }) });
      await expectAccepted(t, { [TOKEN_HEADER]: signJwt({ alg }, certificateClaims('der-app', 'der-app', now()), der.privateKey) });
    }
    for (const alg of ['HS256', 'HS384', 'HS512']) {
      // Without a certificate, the issuer is the client id; with or without "CN=".
      await expectAccepted(t, { [TOKEN_HEADER]: signJwt({ alg }, { ...certificateClaims('hmac-app', 'hmac-app', now()), iss: 'hmac-app' }, hmacKey) });
      t.equal(lastPortalRequest().headers['x-forwarded-client-id'], 'hmac-app');
    }
  });

  t.test('each rule of the seed, broken alone, gives its own logged reason and the same answer', async (t) => {
    const claims = reportingClaims();
    const cases: Array<[string, string, string]> = [
      ['unknown clientid', reportingToken({ ...claims, clientid: 'nobody' }), `${CERT}Unable to get OAuth2 Application by client id.`],
      ['client without the client_certificate grant', reportingToken({ ...claims, clientid: 'scim-sync' }), `${CERT}Unable to get OAuth2 Application by client id.`],
      ['audience', reportingToken({ ...claims, aud: 'odata' }), `${CERT}Audience validation failed.`],
      ['issuer', reportingToken({ ...claims, iss: 'CN=someone-else' }), `${CERT}Issuer validation failed.`],
      ['signed with another private key', signJwt({ alg: 'RS256' }, claims, attacker.privateKey), `${CERT}Signature validation failed.`],
      ['iat in the future', reportingToken({ ...claims, iat: now() + 120, exp: now() + 600 }), `${CERT}Lifetime validation failed. Token validity not started yet.`],
      ['expired', reportingToken({ ...claims, iat: now() - 600, exp: now() - 1 }), `${CERT}Lifetime validation failed. Token already expired.`],
      ['lifetime over 24 hours', reportingToken({ ...claims, exp: claims.iat as number + 24 * 3600 + 1 }), `${CERT}Lifetime validation failed. Token expiration time exceeds the valid time range of 24 hours.`],
      ['extra claims', reportingToken({ ...claims, sub: 'x', nbf: now() }), `${CERT}Token contains extra claims: sub, nbf`],
    ];
    for (const [name, token, reason] of cases) {
      await t.test(name, async (t) => {
        const [failure] = await expectRefused(t, { [TOKEN_HEADER]: token }, reason);
        t.equal(failure?.method, 'client-certificate');
        t.equal(failure?.clientId, name.startsWith('unknown') ? undefined : name.startsWith('client without') ? undefined : 'reporting-job');
      });
    }
    await expectAccepted(t, { [TOKEN_HEADER]: reportingToken({ ...claims, iat: now() + 30 }) });
    t.pass('a clock 30 s ahead is tolerated');
    await expectAccepted(t, { [TOKEN_HEADER]: reportingToken({ ...claims, iss: reporting.commonName }) });
    t.pass('the issuer may be the bare CN');
  });

  t.test('algorithm confusion and keys named by the token are refused', async (t) => {
    const claims = reportingClaims();
    await expectRefused(t, { [TOKEN_HEADER]: signJwt({ alg: 'none' }, claims, undefined) }, `${CERT}Signing algorithm none is not allowed.`);
    await expectRefused(t, { [TOKEN_HEADER]: signJwt({ alg: 'PS256' }, claims, reporting.privateKey) }, `${CERT}Signing algorithm PS256 is not allowed.`);
    for (const keyText of [reporting.pem, reporting.pem.trim(), reporting.pem.replace(/\r?\n/g, '')]) {
      await expectRefused(t, { [TOKEN_HEADER]: signJwt({ alg: 'HS256' }, claims, keyText) }, `${CERT}Signature validation failed.`);
    }
    t.pass('an HS256 token keyed with the RS application public certificate is refused');

    const fetched: string[] = [];
    const keyServer = createServer((req, res) => {
      fetched.push(req.url ?? '');
      res.end(JSON.stringify({ keys: [attacker.privateKey.export({ format: 'jwk' })] }));
    });
    const port = await listen(keyServer, 0, '127.0.0.1');
    t.teardown(() => stopServer(keyServer));
    const elsewhere = `http://127.0.0.1:${port}/keys`;
    const publicJwk = { kty: 'RSA', n: attacker.privateKey.export({ format: 'jwk' }).n, e: 'AQAB' };
    for (const header of [{ kid: 'attacker-key' }, { jku: elsewhere }, { x5u: elsewhere }, { jwk: publicJwk }, { x5c: [attacker.pem.replace(/-----[A-Z ]+-----|\s/g, '')] }]) {
      await expectRefused(t, { [TOKEN_HEADER]: signJwt({ alg: 'RS256', ...header }, claims, attacker.privateKey) }, `${CERT}Signature validation failed.`);
    }
    t.same(fetched, [], 'no key is ever fetched from where a token points');
    await expectAccepted(t, { [TOKEN_HEADER]: reportingToken(claims, { alg: 'RS256', kid: 'whatever' }) });
    t.pass('a kid is ignored: the registered key verifies');
  });

  t.test('malformed tokens and headers', async (t) => {
    await expectRefused(t, { [TOKEN_HEADER]: 'not-a-jwt' }, `${CERT}The token is not a well-formed JWT.`);
    await expectRefused(t, { [TOKEN_HEADER]: reportingToken({ ...reportingClaims(), iat: 'yesterday' }) }, `${CERT}Lifetime validation failed. The iat and exp claims must be Unix timestamps.`);
    await expectRefused(t, { authorization: 'Bearer' }, 'Bearer token validation failed: The token is not a well-formed JWT.');
    const answer = await request(url('/odata/x'), { headers: { ...JSON_ACCEPT, authorization: 'Basic dXNlcjpwYXNz' } });
    t.match(JSON.parse(answer.body), { error: 'unauthorized' }, 'another Authorization scheme is no machine credential');
  });

  t.test('precedence: Authorization first, the certificate token only when it is absent or invalid', async (t) => {
    const bearer = await accessToken();
    await expectAccepted(t, { authorization: `Bearer ${bearer}`, [TOKEN_HEADER]: 'garbage' });
    t.equal(lastPortalRequest().headers['x-auth-method'], 'client-credentials', "a valid Authorization wins over a bad certificate token (a sidecar token: X-Auth-Method names the grant it came from)");
    await expectAccepted(t, { authorization: `Bearer ${bearer}`, [TOKEN_HEADER]: reportingToken() });
    t.equal(lastPortalRequest().headers['x-auth-method'], 'client-credentials', 'and over a good one');
    await expectAccepted(t, { authorization: 'Bearer not.a.token', [TOKEN_HEADER]: reportingToken() });
    t.equal(lastPortalRequest().headers['x-auth-method'], 'client-certificate', 'an invalid Authorization falls back to the certificate token');
    t.notOk(lastPortalRequest().headers.authorization, 'neither credential reaches the portal');
    const failures = await expectRefused(t, { authorization: 'Bearer not.a.token', [TOKEN_HEADER]: reportingToken({ ...reportingClaims(), aud: 'x' }) }, [
      'Bearer token validation failed: The token is not a well-formed JWT.',
      `${CERT}Audience validation failed.`,
    ]);
    t.same(failures.map((event) => event.method), ['bearer', 'client-certificate']);
  });

  t.test('token endpoint: client_secret_basic and client_secret_post', async (t) => {
    const viaBasic = await requestToken({ grant_type: 'client_credentials' }, basic('reporting-job', REPORTING_SECRET));
    t.equal(viaBasic.status, 200);
    t.match(viaBasic.json, { token_type: 'Bearer', expires_in: 3600, scope: 'odata.read odata.write', access_token: String });
    t.equal(viaBasic.headers['cache-control'], 'no-store');
    const viaPost = await requestToken({ grant_type: 'client_credentials', client_id: 'reporting-job', client_secret: REPORTING_SECRET, scope: 'odata.read' });
    t.equal(viaPost.status, 200);
    t.equal(viaPost.json.scope, 'odata.read');
    await expectAccepted(t, { authorization: `Bearer ${viaPost.json.access_token as string}` });
    t.equal(lastPortalRequest().headers['x-forwarded-roles'], 'odata.read');
    t.equal(lastPortalRequest().headers['x-forwarded-client-id'], 'reporting-job');
    t.equal(lastPortalRequest().headers['x-auth-method'], 'client-credentials');
    t.match(auditEvents(stack).filter((event) => event.event === 'api_auth' && event.reason === 'credential verified').at(-1), { clientId: 'reporting-job', method: 'client-credentials' });
    const issued = auditEvents(stack).filter((event) => event.event === 'api_auth' && event.method === 'client-credentials');
    t.ok(issued.length >= 2, 'token issuance is audited');
  });

  t.test('token endpoint refusals', async (t) => {
    const realm = `Basic realm="${new URL(stack.config.publicUrl).origin}"`;
    const invalidClient = async (name: string, form: Record<string, string>, headers: Record<string, string>, reason: RegExp) => {
      const auditCount = auditEvents(stack).length;
      const answer = await requestToken(form, headers);
      t.equal(answer.status, 401, name);
      t.same(answer.json, INVALID_CLIENT, name);
      t.equal(answer.headers['www-authenticate'], realm, name);
      t.match(auditEvents(stack).slice(auditCount).find((event) => event.event === 'api_auth_failed')?.reason, reason, name);
    };
    const grant = { grant_type: 'client_credentials' };
    await invalidClient('wrong secret', grant, basic('reporting-job', 'wrong'), /secret does not match/);
    await invalidClient('unknown client', grant, basic('nobody', REPORTING_SECRET), /Unable to get OAuth2 Application by client id/);
    await invalidClient('client without the grant', grant, basic('der-app', 'x'), /not registered for client_credentials/);
    await invalidClient('no credentials', grant, {}, /No client authentication included/);
    await invalidClient('form secret without id', { ...grant, client_secret: 'x' }, {}, /No client authentication included/);
    await invalidClient('malformed Basic', grant, { authorization: 'Basic ###' }, /not well-formed/);
    await invalidClient('secret sent without URL-encoding', grant, { authorization: `Basic ${Buffer.from(`reporting-job:${REPORTING_SECRET}`).toString('base64')}` }, /secret does not match|not well-formed/);

    const error = async (form: Record<string, string>, headers: Record<string, string>, status: number, code: string) => {
      const answer = await requestToken(form, headers);
      t.equal(answer.status, status, code);
      t.equal(answer.json.error, code);
    };
    const auth = basic('reporting-job', REPORTING_SECRET);
    await error({ ...grant, client_id: 'reporting-job', client_secret: REPORTING_SECRET }, auth, 400, 'invalid_request');
    await error({ grant_type: 'password' }, auth, 400, 'unsupported_grant_type');
    await error({ grant_type: 'authorization_code' }, auth, 400, 'unsupported_grant_type');
    await error({}, auth, 400, 'invalid_request');
    await error({ ...grant, scope: 'odata.read admin' }, auth, 400, 'invalid_scope');
    await error({ ...grant, scope: 'anything' }, basic('scim-sync', SCIM_SECRET), 400, 'invalid_scope');
    const repeated = await request(url('/oauth2/token'), { method: 'POST', headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials&grant_type=client_credentials' });
    t.equal(repeated.status, 400, 'a repeated parameter');
    const wrongType = await request(url('/oauth2/token'), { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{}' });
    t.equal(wrongType.status, 415);
    for (const endpoint of ['/oauth2/token', '/oauth2/revoke']) {
      const oversized = await request(url(endpoint), { method: 'POST', headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials&pad=' + 'a'.repeat(20_000) });
      t.equal(oversized.status, 413, `${endpoint}: an oversized body is refused`);
    }
    t.equal((await request(url('/oauth2/token'), { headers: auth })).status, 405, 'GET is not allowed');
  });

  t.test('the JWKS publishes the key that verifies the issued tokens', async (t) => {
    const token = await accessToken();
    const jwks = JSON.parse((await request(url('/oauth2/jwks'))).body) as { keys: Array<Record<string, unknown>> };
    t.equal(jwks.keys.length, 1);
    t.notOk(jwks.keys[0]!.d, 'no private part');
    t.equal(decodeProtectedHeader(token).kid, jwks.keys[0]!.kid);
    const issuer = `${new URL(stack.config.publicUrl).origin}/oauth2`;
    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks as never), { issuer, audience: issuer });
    t.match(payload, { client_id: 'reporting-job', sub: 'reporting-job', scope: 'odata.read odata.write', jti: String });
    t.equal(protectedHeader.typ, 'at+jwt');
    t.equal((payload.exp ?? 0) - (payload.iat ?? 0), 3600);
  });

  t.test('a credential is valid only on its application routes', async (t) => {
    await expectRefused(t, { authorization: `Bearer ${await accessToken()}` }, 'Bearer token validation failed: The application is not allowed on this path (routes).', '/scim/v2/Users');
    await expectRefused(t, { [TOKEN_HEADER]: reportingToken() }, `${CERT}The application is not allowed on this path (routes).`, '/admin');
    const scim = await accessToken('scim-sync', SCIM_SECRET);
    await expectAccepted(t, { authorization: `Bearer ${scim}` }, '/scim/v2/Users');
    await expectRefused(t, { authorization: `Bearer ${scim}` }, 'Bearer token validation failed: The application is not allowed on this path (routes).', '/odata/x');
  });

  t.test("revocation: the application may revoke its own tokens only (another's is refused); unknown tokens are answered 200", async (t) => {
    const revoke = (token: string, auth: Record<string, string>) =>
      request(url('/oauth2/revoke'), { method: 'POST', headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token }).toString() });
    const token = await accessToken();
    await expectAccepted(t, { authorization: `Bearer ${token}` });
    const foreign = await revoke(token, basic('scim-sync', SCIM_SECRET));
    t.equal(foreign.status, 400, "another application's token is refused (RFC 7009 §2.1) …");
    t.same(JSON.parse(foreign.body), { error: 'unauthorized_client', error_description: 'The token was not issued to this client.' });
    await expectAccepted(t, { authorization: `Bearer ${token}` });
    t.pass('… and the token still works');
    t.equal((await revoke('not-a-token', basic('reporting-job', REPORTING_SECRET))).status, 200, 'an unknown token: 200');
    t.equal((await revoke(token, basic('reporting-job', 'wrong'))).status, 401, 'the client must authenticate');
    t.equal((await revoke(token, basic('reporting-job', REPORTING_SECRET))).status, 200);
    await expectRefused(t, { authorization: `Bearer ${token}` }, 'Bearer token validation failed: The token has been revoked.');
  });

  t.test('a verified credential is cached, audited once, and never used past its exp', async (t) => {
    const claims = { ...reportingClaims(), exp: now() + 30 };
    const token = reportingToken(claims);
    const verified = () => auditEvents(stack).filter((event) => event.event === 'api_auth' && event.method === 'client-certificate').length;
    const before = verified();
    for (let i = 0; i < 3; i++) await expectAccepted(t, { [TOKEN_HEADER]: token });
    t.equal(verified(), before + 1, 'api_auth once for three requests');
    offsetMs += 31_000;
    t.teardown(() => (offsetMs -= 31_000));
    await expectRefused(t, { [TOKEN_HEADER]: token }, `${CERT}Lifetime validation failed. Token already expired.`);
  });

  t.test('spoofed identity headers never reach the portal; a session request carries no client id', async (t) => {
    const spoofed = { 'X-Forwarded-Client-Id': 'admin-app', X_Auth_Method: 'session', 'X-Forwarded-Roles': 'admin' };
    await expectAccepted(t, { ...spoofed, [TOKEN_HEADER]: reportingToken() });
    t.match(lastPortalRequest().headers, { 'x-forwarded-client-id': 'reporting-job', 'x-auth-method': 'client-certificate', 'x-forwarded-roles': 'odata.read,odata.write' });
    t.notOk(lastPortalRequest().headers.x_auth_method);
    const { cookieHeader } = await signIn(stack);
    await expectAccepted(t, { ...spoofed, cookie: cookieHeader }, '/page');
    t.notOk(lastPortalRequest().headers['x-forwarded-client-id']);
    t.equal(lastPortalRequest().headers['x-auth-method'], 'session');
  });

  t.test('no session is created for machine requests', async (t) => {
    const answers = [await expectAccepted(t, { [TOKEN_HEADER]: reportingToken() }), await expectAccepted(t, { authorization: `Bearer ${await accessToken()}` })];
    for (const answer of answers) t.notOk(answer.headers['set-cookie']);
    const tokenAnswer = await requestToken({ grant_type: 'client_credentials' }, basic('reporting-job', REPORTING_SECRET));
    t.notOk(tokenAnswer.headers['set-cookie']);
    t.notOk(stack.logLines.some((line) => line.includes('"event":"login"') && line.includes('reporting-job')));
  });

  t.test('nothing secret is logged', async (t) => {
    const token = reportingToken();
    await expectAccepted(t, { [TOKEN_HEADER]: token });
    const log = stack.logLines.join('\n');
    for (const secret of [REPORTING_SECRET, SCIM_SECRET, hmacKey, token.split('.')[2]!]) t.notOk(log.includes(secret), 'a secret or signature in the log');
  });
});

t.test('failed client authentications are throttled per address and client id', async (t) => {
  const stack: Stack = await startStack({
    config: { applications: [{ clientId: 'job', grantTypes: ['client_credentials'], clientSecretHash: await hashSecret('right'), routes: ['^/api/'] }] },
  });
  t.teardown(() => stack.stop());
  const attempt = (secret: string, clientId = 'job') =>
    request(stack.sidecar.url + '/oauth2/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret }).toString(),
    });
  for (let i = 0; i < 20; i++) t.equal((await attempt(`wrong-${i}`)).status, 401);
  const afterLimit = await attempt('right');
  t.equal(afterLimit.status, 401, 'past the limit even the right secret is not checked');
  t.same(JSON.parse(afterLimit.body), INVALID_CLIENT);
  t.match(auditEvents(stack).at(-1), { event: 'api_auth_failed', code: 'throttled', clientId: 'job' });
  await attempt('x', 'other-job');
  t.match(auditEvents(stack).at(-1), { code: 'unknown_client' }, 'another client id from the same address is still checked');

  // Counted by the metrics: past 20 a minute the audit log sums failures of a kind up.
  const refusals = async (result: string) => (await scrape(stack.sidecar.metricsUrl)).value('oidc_sidecar_auth_events_total', { event: 'api_auth_failed', method: 'client-credentials', result });
  const [checkedBefore, throttledBefore] = [await refusals('unknown_client'), await refusals('throttled')];
  const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => attempt(`parallel-${i}`, 'other-job')));
  t.ok(answers.every((answer) => answer.status === 401));
  t.equal((await refusals('unknown_client')) - checkedBefore, 19, 'sent all at once, still no more than the limit are checked (one was before)');
  t.equal((await refusals('throttled')) - throttledBefore, 21);
});

t.test('too many client secret checks at once from many addresses: the surplus is answered 503 without a check', async (t) => {
  // The last of the 66 checks may end seconds later on a slow machine: its connection, silent until
  // then, is not closed for idling (twice upstream.timeoutSeconds) before its answer.
  const stack: Stack = await startStack({
    config: { listen: { trustedProxies: ['127.0.0.1'] }, upstream: { timeoutSeconds: 60 }, applications: [{ clientId: 'job', grantTypes: ['client_credentials'], clientSecretHash: await hashSecret('right'), routes: ['^/api/'] }] },
  });
  t.teardown(() => stack.stop());
  const attempt = (from: string) =>
    request(stack.sidecar.url + '/oauth2/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': from },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'job', client_secret: 'wrong' }).toString(),
    });
  const answers = await Promise.all(Array.from({ length: 150 }, (_, i) => attempt(`198.51.100.${i}`)));
  const busy = answers.filter((answer) => answer.status === 503);
  t.ok(busy.length > 0, `${busy.length} of 150 answered 503 (two checks run at once, 64 wait)`);
  t.equal(busy.length + answers.filter((answer) => answer.status === 401).length, 150, 'every other one is refused after its check');
  t.match(JSON.parse(busy[0]!.body), { error: 'temporarily_unavailable' });
  t.equal(busy[0]!.headers['retry-after'], '1');
  const right = await request(stack.sidecar.url + '/oauth2/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': '198.51.100.1' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'job', client_secret: 'right' }).toString(),
  });
  t.equal(right.status, 200, 'once the rush is over the right secret works, and a busy answer counted as no failure');
});

/**
 * A stack behind a trusted proxy (127.0.0.1) with the application `job`, and a failed
 * client-credentials attempt from a client the proxy names; `stop` may be called by the test.
 */
async function startBehindTrustedProxy(t: Test, config: Record<string, unknown> = {}) {
  const stack: Stack = await startStack({
    config: {
      listen: { trustedProxies: ['127.0.0.1'] },
      applications: [{ clientId: 'job', grantTypes: ['client_credentials'], clientSecretHash: await hashSecret('right'), routes: ['^/api/'] }],
      ...config,
    },
  });
  let stopped = false;
  t.teardown(() => (stopped ? undefined : stack.stop()));
  const failedAttempt = (forwardedFor: string) =>
    request(stack.sidecar.url + '/oauth2/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': forwardedFor },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'job', client_secret: 'wrong' }).toString(),
    });
  // Twenty `secret` refusals a minute are audited one by one; later ones are in the summary written at stop.
  const stop = async () => {
    stopped = true;
    await stack.stop();
  };
  return { stack, failedAttempt, stop };
}

t.test('behind a trusted proxy the client is named by X-Forwarded-For: in the audit log and in the throttle', async (t) => {
  const { stack, failedAttempt, stop } = await startBehindTrustedProxy(t, { log: { access: true } });
  await request(stack.sidecar.url + '/api/items', { headers: { accept: 'application/json', authorization: 'Bearer junk', 'x-forwarded-for': '198.51.100.1, 203.0.113.9' } });
  t.match(auditEvents(stack).at(-1), { event: 'api_auth_failed', ip: '203.0.113.9' }, 'the address the trusted proxy saw, not what the client prepended');
  const accessLines = stack.logLines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.log === 'access');
  t.match(accessLines.at(-1), { path: '/api/items', status: 401, ip: '203.0.113.9' }, 'the access log names the same client');
  for (let i = 0; i < 20; i++) await failedAttempt('203.0.113.9');
  await failedAttempt('203.0.113.9');
  t.match(auditEvents(stack).at(-1), { code: 'throttled', ip: '203.0.113.9' }, 'that client is throttled …');
  await failedAttempt('203.0.113.10');
  await stop();
  t.match(auditEvents(stack).at(-1), { code: 'secret', ip: '203.0.113.10', reason: /^1 more like this from 203\.0\.113\.10 / }, '… another behind the same proxy is still checked');
});

t.test('with the audit log off a refused credential is still explained, at debug, and the answer is the same', async (t) => {
  const { stack, stop } = await startBehindTrustedProxy(t, { audit: { enabled: false }, log: { level: 'debug' } });
  const answer = await request(stack.sidecar.url + '/api/items', { headers: { accept: 'application/json', authorization: 'Bearer junk.token.value' } });
  t.equal(answer.status, 401);
  t.match(JSON.parse(answer.body), { error: 'invalid_client' });
  await stop();
  t.same(auditEvents(stack), [], 'no audit line');
  const entries = stack.logLines.map((line) => JSON.parse(line) as Record<string, unknown>);
  t.match(
    entries.find((entry) => entry.msg === 'machine client refused'),
    { level: 20, method: 'bearer', reason: /^Bearer token validation failed: /, requestId: String },
    'the precise reason, for troubleshooting',
  );
  t.notOk(stack.logLines.join('\n').includes('junk.token.value'), 'not the token');
});

t.test('an IPv6 client is throttled by its /64: a new address in it for every attempt does not escape', async (t) => {
  const { stack, failedAttempt, stop } = await startBehindTrustedProxy(t);
  for (let i = 1; i <= 20; i++) await failedAttempt(`2001:db8:1:2::${i.toString(16)}`);
  await failedAttempt('2001:db8:1:2:ffff:ffff:ffff:fffe');
  t.match(auditEvents(stack).at(-1), { code: 'throttled', ip: '2001:db8:1:2:ffff:ffff:ffff:fffe' }, 'throttled: twenty failures from its /64');
  await failedAttempt('2001:db8:1:3::1');
  await stop();
  t.match(auditEvents(stack).at(-1), { code: 'secret', ip: '2001:db8:1:3::1' }, 'another /64 is still checked');
});

t.test('a throttled attempt takes as long as a checked one: answer times do not tell which client ids exist', async (t) => {
  const stack: Stack = await startStack({
    config: { applications: [{ clientId: 'job', grantTypes: ['client_credentials'], clientSecretHash: await hashSecret('right'), routes: ['^/api/'] }] },
  });
  t.teardown(() => stack.stop());
  const timedAttempt = async (clientId: string) => {
    const started = performance.now();
    const answer = await request(stack.sidecar.url + '/oauth2/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: 'wrong' }).toString(),
    });
    t.equal(answer.status, 401, clientId);
    return { ms: performance.now() - started, code: auditEvents(stack).at(-1)?.code };
  };
  const checked: number[] = [];
  for (let i = 0; i < 20; i++) checked.push((await timedAttempt(`unknown-${i}`)).ms);
  const typical = checked.sort((a, b) => a - b)[10]!;
  const unknown = await timedAttempt('unknown-20');
  t.equal(unknown.code, 'throttled', 'past the limit an unknown id is not checked');
  const registered = await timedAttempt('job');
  t.equal(registered.code, 'secret', 'a registered id is still checked');
  t.ok(unknown.ms >= typical / 2, `the throttled answer took ${unknown.ms.toFixed(0)} ms, a check typically ${typical.toFixed(0)} ms`);
});

function encodeForm(text: string): string {
  return encodeURIComponent(text).replace(/%20/g, '+');
}
