import t from 'tap';
import { CookieJar, signInWithoutBrowser } from '../support/browserless.js';
import { request } from '../support/http.js';
import { openRedirectPayloads } from '../support/open-redirects.js';
import { NAVIGATION, startStack, type Stack } from '../support/stack.js';

/**
 * Every payload of the open-redirect corpus, as `rd=` of /oauth2/start and as the page that starts a
 * transparent sign-in: after the whole sign-in, the browser is never sent off the portal.
 */
t.test('no open-redirect payload sends the browser off the portal after sign-in', async (t) => {
  const stack = await startStack();
  t.teardown(() => stack.stop());
  const publicOrigin = new URL(stack.config.publicUrl).origin;
  const starts = openRedirectPayloads().flatMap((payload) => {
    const viaStart = `/oauth2/start?rd=${encodeURIComponent(payload)}`;
    return payload.startsWith('/') && isPrintableAscii(payload) ? [viaStart, payload] : [viaStart];
  });
  let checked = 0;
  const worker = async () => {
    const idpSession = new CookieJar();
    for (let start = starts.pop(); start !== undefined; start = starts.pop()) {
      const destination = await signInFrom(stack, start, idpSession);
      if (destination === null) continue;
      t.equal(new URL(destination, publicOrigin).origin, publicOrigin, `${start} → ${destination}`);
      checked++;
    }
  };
  await Promise.all(Array.from({ length: 6 }, worker));
  t.ok(checked >= openRedirectPayloads().length, `${checked} sign-ins checked`);
});

/** Where the sidecar finally sends the browser after signing in from `path`; null when it refused the path (400). */
async function signInFrom(stack: Stack, path: string, idpSession: CookieJar): Promise<string | null> {
  const start = await request(stack.sidecar.url + path, { headers: NAVIGATION });
  if (start.status === 400) return null;
  const idpUrl = String(start.headers.location);
  if (start.status !== 302 || !idpUrl.startsWith(stack.idp.issuer)) throw new Error(`${path}: ${start.status} ${idpUrl}`);
  const callback = new URL(await signInWithoutBrowser(idpUrl, 'alice', 'alice-password', idpSession));
  const answer = await request(stack.sidecar.url + callback.pathname + callback.search, {
    headers: { ...NAVIGATION, cookie: `_oidc_sidecar_csrf=${start.cookies._oidc_sidecar_csrf}` },
  });
  if (answer.status !== 302) throw new Error(`${path}: callback answered ${answer.status}`);
  return String(answer.headers.location);
}

/** Only printable ASCII can be sent as a raw request path. */
function isPrintableAscii(text: string): boolean {
  return [...text].every((char) => char > ' ' && char <= '~');
}
