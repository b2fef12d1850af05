import { createServer } from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import * as oidc from 'openid-client';
import { chromium } from 'playwright-core';
import t, { type Test } from 'tap';
import { CookieJar, cancelSignInWithoutBrowser, signInWithoutBrowser, signOutWithoutBrowser } from '../support/browserless.js';
import { listen, stopServer } from '../support/free-port.js';
import { DEMO_USERS, startIdp, type IdpOptions, type TestIdp, type TestUser } from '../support/idp.js';

const REDIRECT_URI = 'http://127.0.0.1:1/callback';
const POST_LOGOUT_URI = 'http://127.0.0.1:1/signed-out';
const SECRET = 'portal-secret-portal-secret-portal';
const { alice } = DEMO_USERS;

async function startTestIdp(t: Test, options: Partial<IdpOptions> = {}): Promise<TestIdp> {
  const idp = await startIdp({
    clients: [{ clientId: 'portal', clientSecret: SECRET, redirectUris: [REDIRECT_URI], postLogoutRedirectUris: [POST_LOGOUT_URI] }],
    ...options,
  });
  t.teardown(() => idp.stop());
  return idp;
}

async function relyingParty(idp: TestIdp, clientId = 'portal', auth?: oidc.ClientAuth) {
  return oidc.discovery(new URL(idp.issuer), clientId, SECRET, auth, { execute: [oidc.allowInsecureRequests] });
}

/** An authorization request with PKCE, state and nonce, and what the callback must be checked against. */
async function authorizationRequest(config: oidc.Configuration) {
  const pkceCodeVerifier = oidc.randomPKCECodeVerifier();
  const expectedState = oidc.randomState();
  const expectedNonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope: 'openid profile email',
    code_challenge: await oidc.calculatePKCECodeChallenge(pkceCodeVerifier),
    code_challenge_method: 'S256',
    state: expectedState,
    nonce: expectedNonce,
  });
  return { url: url.href, checks: { pkceCodeVerifier, expectedState, expectedNonce } };
}

async function signIn(config: oidc.Configuration, jar = new CookieJar(), user: TestUser = alice) {
  const request = await authorizationRequest(config);
  const callback = await signInWithoutBrowser(request.url, user.username, user.password, jar);
  return oidc.authorizationCodeGrant(config, new URL(callback), request.checks);
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(() => new Error('expected a rejection'), (error: unknown) => error);
}

t.test('discovery document lists the endpoints and capabilities relying parties need', async (t) => {
  const idp = await startTestIdp(t);
  const response = await fetch(idp.url('/.well-known/openid-configuration'));
  const metadata = (await response.json()) as Record<string, unknown>;
  t.equal(metadata.issuer, idp.issuer);
  t.match(idp.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
  for (const endpoint of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'jwks_uri', 'end_session_endpoint', 'revocation_endpoint', 'introspection_endpoint']) {
    t.match(metadata[endpoint], new RegExp(`^${idp.issuer}/`), endpoint);
  }
  t.same(metadata.code_challenge_methods_supported, ['S256']);
  t.ok((metadata.id_token_signing_alg_values_supported as string[]).includes('RS256'));
  t.equal(metadata.backchannel_logout_supported, true);
  t.equal(metadata.backchannel_logout_session_supported, true);
  t.ok((metadata.grant_types_supported as string[]).includes('client_credentials'));
  for (const claim of ['sub', 'preferred_username', 'name', 'email', 'email_verified', 'groups', 'roles', 'sid']) {
    t.ok((metadata.claims_supported as string[]).includes(claim), claim);
  }
});

t.test('sign-in puts every user claim in the ID token, with sid, and issues a refresh token', async (t) => {
  const idp = await startTestIdp(t, { accessTokenTtlSeconds: 5 });
  const tokens = await signIn(await relyingParty(idp));
  t.match(tokens.claims(), {
    iss: idp.issuer,
    aud: 'portal',
    sub: alice.sub,
    preferred_username: 'alice',
    name: 'Alice Zoë Example',
    email: 'alice@example.com',
    email_verified: true,
    groups: ['portal-users', 'admins'],
    roles: ['Portal.Admin'],
    sid: String,
  });
  t.equal(tokens.expires_in, 5);
  t.type(tokens.refresh_token, 'string');
  const header = JSON.parse(Buffer.from(tokens.id_token!.split('.')[0]!, 'base64url').toString()) as { alg: string };
  t.equal(header.alg, 'RS256');
});

t.test('refresh rotates the refresh token; reusing the old one revokes the grant', async (t) => {
  const idp = await startTestIdp(t);
  const config = await relyingParty(idp);
  const first = await signIn(config);
  const refreshed = await oidc.refreshTokenGrant(config, first.refresh_token!);
  t.not(refreshed.refresh_token, first.refresh_token);
  t.equal(refreshed.claims()?.name, 'Alice Zoë Example');
  t.match(await rejection(oidc.refreshTokenGrant(config, first.refresh_token!)), { error: 'invalid_grant' });
  t.match(await rejection(oidc.refreshTokenGrant(config, refreshed.refresh_token!)), { error: 'invalid_grant' }, 'grant revoked');
});

t.test('rotation can be turned off', async (t) => {
  const idp = await startTestIdp(t, { rotateRefreshTokens: false });
  const config = await relyingParty(idp);
  const first = await signIn(config);
  const refreshed = await oidc.refreshTokenGrant(config, first.refresh_token!);
  t.equal(refreshed.refresh_token, first.refresh_token);
});

t.test('no refresh token for a client without the refresh_token grant', async (t) => {
  const idp = await startTestIdp(t, {
    clients: [{ clientId: 'portal', clientSecret: SECRET, redirectUris: [REDIRECT_URI], grantTypes: ['authorization_code'] }],
  });
  const tokens = await signIn(await relyingParty(idp));
  t.equal(tokens.refresh_token, undefined);
  t.equal(tokens.claims()?.preferred_username, 'alice');
});

t.test('a wrong password does not complete the sign-in', async (t) => {
  const idp = await startTestIdp(t);
  const { url } = await authorizationRequest(await relyingParty(idp));
  await t.rejects(signInWithoutBrowser(url, 'alice', 'bob-password'), /sign-in did not complete: 200 Wrong username or password\./);
  await t.rejects(signInWithoutBrowser(url, 'nobody', ''), /Wrong username or password/);
});

t.test('an existing IdP session signs in again without the form', async (t) => {
  const idp = await startTestIdp(t);
  const config = await relyingParty(idp);
  const jar = new CookieJar();
  const first = await signIn(config, jar);
  const { url, checks } = await authorizationRequest(config);
  const callback = await signInWithoutBrowser(url, 'ignored', 'ignored', jar);
  const second = await oidc.authorizationCodeGrant(config, new URL(callback), checks);
  t.equal(second.claims()?.sid, first.claims()?.sid);
});

t.test('cancel returns access_denied to the redirect URI', async (t) => {
  const idp = await startTestIdp(t);
  const { url, checks } = await authorizationRequest(await relyingParty(idp));
  const callback = new URL(await cancelSignInWithoutBrowser(url));
  t.equal(callback.origin + callback.pathname, REDIRECT_URI);
  t.equal(callback.searchParams.get('error'), 'access_denied');
  t.equal(callback.searchParams.get('error_description'), 'The user cancelled the sign-in');
  t.equal(callback.searchParams.get('state'), checks.expectedState);
  t.equal(callback.searchParams.get('iss'), idp.issuer);
});

t.test('PKCE is required', async (t) => {
  const idp = await startTestIdp(t);
  const url = oidc.buildAuthorizationUrl(await relyingParty(idp), { redirect_uri: REDIRECT_URI, scope: 'openid', state: 'xyz' });
  const response = await fetch(url, { redirect: 'manual' });
  const location = new URL(response.headers.get('location')!);
  t.equal(location.searchParams.get('error'), 'invalid_request');
  t.match(location.searchParams.get('error_description'), /requires PKCE/);
});

t.test('RP-initiated logout completes without a question and notifies the back-channel on loopback', async (t) => {
  const logoutTokens: string[] = [];
  const receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      logoutTokens.push(new URLSearchParams(body).get('logout_token') ?? '');
      res.end();
    });
  });
  const receiverPort = await listen(receiver, 0, '127.0.0.1');
  t.teardown(() => stopServer(receiver));
  const idp = await startTestIdp(t, {
    clients: [{
      clientId: 'portal',
      clientSecret: SECRET,
      redirectUris: [REDIRECT_URI],
      postLogoutRedirectUris: [POST_LOGOUT_URI],
      backchannelLogoutUri: `http://127.0.0.1:${receiverPort}/oauth2/backchannel-logout`,
    }],
  });
  const config = await relyingParty(idp);
  const jar = new CookieJar();
  const tokens = await signIn(config, jar);
  const endSession = oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: POST_LOGOUT_URI, state: 'bye' });

  t.equal(await signOutWithoutBrowser(endSession.href, jar), `${POST_LOGOUT_URI}?state=bye`);
  t.equal(logoutTokens.length, 1);
  const logoutClaims = JSON.parse(Buffer.from(logoutTokens[0]!.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
  t.match(logoutClaims, { iss: idp.issuer, aud: 'portal', sub: alice.sub, sid: tokens.claims()?.sid });
  const introspection = await oidc.tokenIntrospection(config, tokens.access_token);
  t.equal(introspection.active, false, 'tokens end with the IdP session');
  const { url } = await authorizationRequest(config);
  await t.rejects(signInWithoutBrowser(url, 'alice', 'wrong', jar), /Wrong username/, 'the IdP session is gone');
});

t.test('the fetch option sees the back-channel logout request', async (t) => {
  const seen: string[] = [];
  const idp = await startTestIdp(t, {
    clients: [{ clientId: 'portal', clientSecret: SECRET, redirectUris: [REDIRECT_URI], backchannelLogoutUri: 'http://127.0.0.1:1/bcl' }],
    fetch: async (url) => {
      seen.push(String(url));
      return new Response(null, { status: 200 });
    },
  });
  const config = await relyingParty(idp);
  const jar = new CookieJar();
  const tokens = await signIn(config, jar);
  const endSession = oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token! });
  t.match(await signOutWithoutBrowser(endSession.href, jar), `${idp.issuer}/session/end/success`);
  t.same(seen, ['http://127.0.0.1:1/bcl']);
});

t.test('client credentials and introspection', async (t) => {
  const idp = await startTestIdp(t, {
    clients: [{ clientId: 'reporting-job', clientSecret: SECRET, redirectUris: [], grantTypes: ['client_credentials'] }],
  });
  const config = await relyingParty(idp, 'reporting-job');
  const tokens = await oidc.clientCredentialsGrant(config);
  t.equal(tokens.token_type, 'bearer');
  t.match(await oidc.tokenIntrospection(config, tokens.access_token), { active: true, client_id: 'reporting-job' });
  await oidc.tokenRevocation(config, tokens.access_token);
  t.match(await oidc.tokenIntrospection(config, tokens.access_token), { active: false });
});

t.test('private_key_jwt client authentication', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const idp = await startTestIdp(t, {
    clients: [{
      clientId: 'portal',
      redirectUris: [REDIRECT_URI],
      tokenEndpointAuthMethod: 'private_key_jwt',
      jwks: { keys: [{ ...publicKey.export({ format: 'jwk' }), alg: 'RS256', use: 'sig' }] },
    }],
  });
  const signingKey = await crypto.subtle.importKey('pkcs8', privateKey.export({ format: 'der', type: 'pkcs8' }), { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['sign']);
  const tokens = await signIn(await relyingParty(idp, 'portal', oidc.PrivateKeyJwt(signingKey)));
  t.equal(tokens.claims()?.sub, alice.sub);
});

t.test('bob has no roles; custom users replace the demo users', async (t) => {
  const idp = await startTestIdp(t, { users: [{ ...DEMO_USERS.bob, username: 'robert', password: 'x' }] });
  t.equal(idp.users.length, 1);
  const tokens = await signIn(await relyingParty(idp), new CookieJar(), idp.users[0]!);
  t.match(tokens.claims(), { preferred_username: 'robert', name: 'Bob Builder', email: 'bob@example.org', groups: ['portal-users'], roles: [] });
});

t.test('in a browser: accessible login form, wrong password, sign-in, automatic logout, cancel', async (t) => {
  const rp = createServer((_req, res) => res.end('relying party'));
  const rpUrl = `http://127.0.0.1:${await listen(rp, 0, '127.0.0.1')}`;
  t.teardown(() => stopServer(rp));
  const idp = await startTestIdp(t, {
    clients: [{ clientId: 'portal', clientSecret: SECRET, redirectUris: [`${rpUrl}/callback`], postLogoutRedirectUris: [`${rpUrl}/signed-out`] }],
  });
  const config = await relyingParty(idp);
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium' });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  const authorizationUrl = (state: string) =>
    oidc.buildAuthorizationUrl(config, { redirect_uri: `${rpUrl}/callback`, scope: 'openid profile email', code_challenge: 'x'.repeat(43), code_challenge_method: 'S256', state }).href;

  await page.goto(authorizationUrl('one'));
  t.equal(await page.title(), 'Sign in');
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill('not-her-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  t.equal(await page.getByRole('alert').textContent(), 'Wrong username or password.');
  t.equal(await page.getByLabel('Username').inputValue(), 'alice', 'the username is kept');
  await page.getByLabel('Password').fill('alice-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${rpUrl}/callback?**`);
  t.match(new URL(page.url()).searchParams.get('code'), /.+/);
  t.equal(new URL(page.url()).searchParams.get('state'), 'one');

  await page.goto(oidc.buildEndSessionUrl(config, { client_id: 'portal', post_logout_redirect_uri: `${rpUrl}/signed-out`, state: 'bye' }).href);
  await page.waitForURL(`${rpUrl}/signed-out?state=bye`);

  await page.goto(authorizationUrl('two'));
  await page.getByRole('button', { name: 'Cancel' }).click();
  await page.waitForURL(`${rpUrl}/callback?**`);
  t.match(Object.fromEntries(new URL(page.url()).searchParams), { error: 'access_denied', state: 'two' });
});
