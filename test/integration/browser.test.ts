import type { BrowserContext, Page, Request, Response } from 'playwright-core';
import t, { type Test } from 'tap';
import { cookieFor, launchChromium } from '../support/browser.js';
import { request } from '../support/http.js';
import { DEMO_USERS } from '../support/idp.js';
import type { RecordedRequest } from '../support/portal.js';
import { NAVIGATION, startStack } from '../support/stack.js';

/**
 * End to end in a real browser (headless Chromium): sign-in through the test IdP's login form,
 * identity headers at the portal, the session cookie's attributes, sign-out, several tabs, and the
 * failures a user can cause at the IdP (wrong password, Cancel).
 */

const REPORT_PATH = '/reports/q3?year=2026';
const SCREENSHOT_PATH = '/tmp/oidc-sidecar-portal-after-sign-in.png';
const alice = DEMO_USERS.alice;

const stack = await startStack();
const browser = await launchChromium();
t.teardown(async () => {
  await browser.close();
  await stack.stop();
});

const sidecarUrl = stack.sidecar.url;
const sessionCookieName = stack.config.session.cookie.name;
const sidecarCookieNames = [sessionCookieName, `${sessionCookieName}_csrf`];

t.test('sign in at the IdP, reach the page first asked for with identity headers, then sign out', async (t) => {
  const context = await newContext(t);
  const page = await context.newPage();
  const target = sidecarUrl + REPORT_PATH;

  await expectLoginFormStraightFrom(t, page, await page.goto(target), target);
  await submitLogin(page, alice.username, alice.password);
  await page.waitForURL(target);
  t.equal(page.url(), target, 'the browser ends on the page it first asked for');
  await expectPortalPage(t, page, REPORT_PATH);
  t.match(await page.locator('#identity').innerText(), /Alice Zoë Example/, 'the portal shows the decoded name');
  await page.screenshot({ path: SCREENSHOT_PATH, fullPage: true });

  expectIdentityAtPortal(t, lastPortalRequest(REPORT_PATH));
  const sessionCookie = await expectSessionCookieAttributes(t, context);

  const signOutHops = await signOutInBrowser(page);
  t.ok(signOutHops.some((url) => url.startsWith(stack.idp.issuer)), `sign-out went through the IdP: ${signOutHops.join(' → ')}`);
  t.equal(new URL(page.url()).origin, new URL(sidecarUrl).origin, 'the browser ends on the sidecar');
  await t.resolves(page.getByRole('heading', { name: 'Signed out' }).waitFor(), 'the sidecar shows its signed-out page');
  t.match(await page.textContent('body'), /You have signed out of the portal/, 'with its message');
  t.equal(await cookieFor(context, sidecarUrl, sessionCookieName), undefined, 'the session cookie is gone from the browser');

  await expectOldCookieRefused(t, sessionCookie);
  await expectLoginFormStraightFrom(t, page, await page.goto(target), target);
  t.pass('the IdP session ended too: the next visit asks for the password again');
});

t.test("a link to sign_out on another site asks first: only the button on the sidecar's page signs out", async (t) => {
  const context = await newContext(t);
  const page = await context.newPage();
  const target = sidecarUrl + REPORT_PATH;
  await page.goto(target);
  await submitLogin(page, alice.username, alice.password);
  await page.waitForURL(target);
  const otherSite = 'http://other-site.example/';
  await context.route(otherSite, (route) => route.fulfill({ contentType: 'text/html', body: `<a href="${sidecarUrl}/oauth2/sign_out">Sign out of the portal</a>` }));
  const followLinkFromOtherSite = async () => {
    await page.goto(otherSite);
    await page.getByRole('link', { name: 'Sign out of the portal' }).click();
    await page.getByRole('heading', { name: 'Sign out?' }).waitFor();
  };

  await followLinkFromOtherSite();
  t.pass('the sidecar asks before signing out');
  t.ok(await cookieFor(context, sidecarUrl, sessionCookieName), 'the session cookie is still there');
  await page.goto(target);
  await expectPortalPage(t, page, REPORT_PATH);

  await followLinkFromOtherSite();
  const isSignedOutPage = (url: URL) => url.origin === new URL(sidecarUrl).origin && url.pathname === '/oauth2/sign_out';
  await Promise.all([page.waitForURL((url) => url.origin === stack.idp.issuer), page.getByRole('button', { name: 'Sign out' }).click()]);
  await page.waitForURL(isSignedOutPage, { timeout: 3_000 }).catch(() => confirmAtIdp(page, isSignedOutPage));
  await t.resolves(page.getByRole('heading', { name: 'Signed out' }).waitFor(), 'the button signed the user out, through the IdP');
  t.equal(await cookieFor(context, sidecarUrl, sessionCookieName), undefined, 'the session cookie is gone');
});

t.test('two tabs that asked for different pages each land on their own page after signing in', async (t) => {
  const context = await newContext(t);
  const tabs = [
    { page: await context.newPage(), path: '/reports/tab-a?n=1' },
    { page: await context.newPage(), path: '/invoices/tab-b' },
  ];
  for (const { page, path } of tabs) {
    await expectLoginFormStraightFrom(t, page, await page.goto(sidecarUrl + path), sidecarUrl + path);
  }
  for (const { page, path } of tabs) {
    await submitLogin(page, alice.username, alice.password);
    await page.waitForURL(sidecarUrl + path);
    await expectPortalPage(t, page, path);
    t.equal(lastPortalRequest(path).headers['x-forwarded-user'], alice.username, `${path} reached the portal as alice`);
  }
});

t.test('with session.cookie.sameSite: strict, and the provider another site, the user still lands on the page signed in', async (t) => {
  const strictStack = await startStack({ idp: { issuerHost: 'localhost' }, config: { session: { cookie: { sameSite: 'strict' } } } });
  t.teardown(() => strictStack.stop());
  const context = await newContext(t);
  const page = await context.newPage();
  const target = strictStack.sidecar.url + REPORT_PATH;
  await page.goto(target);
  t.equal(new URL(page.url()).hostname, 'localhost', 'at the provider, another site');
  await submitLogin(page, alice.username, alice.password);
  await page.waitForURL(target);
  t.match(await page.locator('#identity').innerText(), /Alice Zoë Example/, 'the portal page, signed in: the Strict cookie came along');
  t.match(await cookieFor(context, strictStack.sidecar.url, sessionCookieName), { sameSite: 'Strict' });
  t.equal(strictStack.portal.requests.filter((entry) => entry.url === REPORT_PATH).at(-1)?.headers['x-forwarded-user'], alice.username);
});

t.test('a wrong password keeps the user at the IdP; Cancel ends on the access-denied page, without a session', async (t) => {
  const context = await newContext(t);
  const page = await context.newPage();
  const path = '/reports/never-reached';
  await expectLoginFormStraightFrom(t, page, await page.goto(sidecarUrl + path), sidecarUrl + path);

  await submitLogin(page, alice.username, 'not-the-password');
  await t.resolves(page.getByRole('alert').filter({ hasText: 'Wrong username or password.' }).waitFor(), 'the IdP shows its error');
  t.equal(await cookieFor(context, sidecarUrl, sessionCookieName), undefined, 'no session cookie after a wrong password');

  const callback = page.waitForResponse((response) => response.url().startsWith(`${sidecarUrl}/oauth2/callback`));
  await page.getByRole('button', { name: 'Cancel' }).click();
  t.equal((await callback).status(), 403, 'the callback answers 403 for access_denied');
  await t.resolves(page.getByRole('heading', { name: 'Access denied' }).waitFor(), 'the sidecar shows its error page');
  t.match(await page.textContent('body'), /could not be signed in/, 'saying the user could not be signed in');
  t.equal(await cookieFor(context, sidecarUrl, sessionCookieName), undefined, 'no session cookie after Cancel');
  t.notOk(stack.portal.requests.some((entry) => entry.url === path), 'the portal never saw the page');
});

async function newContext(t: Test): Promise<BrowserContext> {
  const context = await browser.newContext();
  t.teardown(() => context.close());
  return context;
}

/** The page shows the IdP's login form, reached from `startUrl` by redirects only (no page between). */
async function expectLoginFormStraightFrom(t: Test, page: Page, response: Response | null, startUrl: string): Promise<void> {
  t.ok(page.url().startsWith(stack.idp.url('/interaction/')), `${startUrl} led to the IdP's login form`);
  await t.resolves(page.getByLabel('Username').waitFor(), 'the login form is shown');
  if (!response) throw new Error(`no response for the navigation to ${startUrl}`);
  const chain = await redirectChain(response);
  const hops = chain.slice(0, -1);
  t.equal(chain[0]?.url, startUrl, 'the chain starts at the page asked for');
  t.equal(chain[0]?.status, 302, 'the sidecar answers with a 302');
  t.ok(
    hops.every((hop) => isRedirect(hop.status)),
    `only redirects before the login form: ${hops.map((hop) => `${hop.status} ${new URL(hop.url).pathname}`).join(' → ')}`,
  );
  t.equal(new URL(chain[1]?.url ?? '').origin, stack.idp.issuer, 'the sidecar redirects straight to the IdP');
}

function isRedirect(status: number | undefined): boolean {
  return status !== undefined && status >= 300 && status < 400;
}

/** Every request of the navigation that ended with `response`, first first, with its status. */
async function redirectChain(response: Response): Promise<Array<{ url: string; status: number | undefined }>> {
  const chain: Array<{ url: string; status: number | undefined }> = [];
  for (let hop: Request | null = response.request(); hop; hop = hop.redirectedFrom()) {
    chain.unshift({ url: hop.url(), status: (await hop.response())?.status() });
  }
  return chain;
}

async function submitLogin(page: Page, username: string, password: string): Promise<void> {
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
}

async function expectPortalPage(t: Test, page: Page, path: string): Promise<void> {
  await t.resolves(page.getByRole('heading', { name: 'Legacy portal', level: 1 }).waitFor(), `${path}: the portal page is shown`);
  t.match(await page.textContent('main'), `GET ${path}`, `${path}: the portal answered this very request`);
}

function lastPortalRequest(path: string): RecordedRequest {
  const entry = stack.portal.requests.findLast((candidate) => candidate.url === path);
  if (!entry) throw new Error(`the portal never received ${path}`);
  return entry;
}

function expectIdentityAtPortal(t: Test, entry: RecordedRequest): void {
  t.match(entry.headers, {
    'x-forwarded-user': alice.username,
    'x-forwarded-email': alice.email,
    'x-forwarded-name': 'Alice Zo%C3%AB Example',
    'x-forwarded-groups': 'portal-users,admins',
    'x-forwarded-roles': 'Portal.Admin',
    'x-forwarded-subject': alice.sub,
    'x-auth-method': 'session',
  }, 'the portal received the identity headers');
  t.equal(decodeURIComponent(String(entry.headers['x-forwarded-name'])), alice.name, 'the name decodes to the claim');
  const received = cookieNames(entry.headers.cookie);
  t.same(
    received.filter((name) => sidecarCookieNames.includes(name)),
    [],
    `the portal received none of the sidecar's cookies (it got: ${received.join(', ') || 'none'})`,
  );
}

function cookieNames(header: string | undefined): string[] {
  return (header ?? '').split(';').map((pair) => pair.split('=')[0]!.trim()).filter(Boolean);
}

/** HttpOnly, SameSite=Lax, Path=/, not Secure on plain-http loopback; resolves with its value. */
async function expectSessionCookieAttributes(t: Test, context: BrowserContext): Promise<string> {
  const cookie = await cookieFor(context, sidecarUrl, sessionCookieName);
  if (!cookie) throw new Error('no session cookie in the browser after sign-in');
  t.match(cookie, { httpOnly: true, sameSite: 'Lax', path: '/', secure: false, domain: '127.0.0.1' }, 'session cookie attributes');
  t.ok(cookie.expires > Date.now() / 1000, 'a persistent cookie (the default cookie type)');
  return cookie.value;
}

/**
 * Goes to the sign-out endpoint and through the IdP's end-session page, confirming there if asked;
 * resolves with the URLs the browser navigated to on the way.
 */
async function signOutInBrowser(page: Page): Promise<string[]> {
  const hops: string[] = [];
  const recordHop = (hop: Request) => void (hop.isNavigationRequest() && hops.push(withoutQuery(hop.url())));
  const isSignedOutPage = (url: URL) => url.origin === new URL(sidecarUrl).origin && url.pathname === '/oauth2/sign_out' && hops.length > 1;
  page.on('request', recordHop);
  try {
    await page.goto(`${sidecarUrl}/oauth2/sign_out`, { waitUntil: 'commit' });
    await page.waitForURL(isSignedOutPage, { timeout: 3_000 }).catch(() => confirmAtIdp(page, isSignedOutPage));
  } finally {
    page.off('request', recordHop);
  }
  return hops;
}

/** The URL without its query (an end-session URL holds the ID token). */
function withoutQuery(url: string): string {
  const { origin, pathname } = new URL(url);
  return origin + pathname;
}

async function confirmAtIdp(page: Page, isSignedOutPage: (url: URL) => boolean): Promise<void> {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(isSignedOutPage);
}

/** After sign-out the old session cookie opens nothing: navigations go to the IdP, API calls get 401. */
async function expectOldCookieRefused(t: Test, oldCookie: string): Promise<void> {
  const requestsBefore = stack.portal.requests.length;
  const cookie = `${sessionCookieName}=${oldCookie}`;
  const navigation = await request(sidecarUrl + REPORT_PATH, { headers: { ...NAVIGATION, cookie } });
  t.equal(navigation.status, 302, 'a navigation with the old cookie is sent to sign in');
  t.ok(String(navigation.headers.location).startsWith(stack.idp.issuer), 'to the IdP');
  const api = await request(sidecarUrl + REPORT_PATH, { headers: { accept: 'application/json', cookie } });
  t.equal(api.status, 401, 'an API call with the old cookie gets 401');
  t.equal(stack.portal.requests.length, requestsBefore, 'the portal saw neither');
}
