import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SignInFailure } from '../oidc/sign-in.js';
import { newBindingValue } from '../oidc/transactions.js';
import { authenticateSession } from './browser-auth.js';
import { isCrossSite } from './request-kind.js';
import { redirect, sendHtml } from './responses.js';
import { requestAuditFields, REQUEST_ID_HEADER, type Services } from './services.js';

/** Sends the browser straight to the identity provider; it comes back to `returnTo`. */
export async function startSignIn(services: Services, req: IncomingMessage, res: ServerResponse, returnTo: string, restarted = false): Promise<void> {
  if (!services.provider.isReady()) return sendProviderUnavailable(services, req, res);
  const binding = services.cookies.readBinding(req) ?? newBindingValue();
  const authorizationUrl = await services.signIn.begin(returnTo, binding, restarted);
  redirect(res, authorizationUrl.href, [services.cookies.binding(binding)]);
}

/** The redirect URI: finishes the sign-in, or shows why it failed. Never a redirect on failure. */
export async function finishSignIn(services: Services, req: IncomingMessage, res: ServerResponse, rawQuery: string): Promise<void> {
  if (!services.provider.isReady()) return sendProviderUnavailable(services, req, res);
  const outcome = await services.signIn.complete(rawQuery, services.cookies.readBinding(req));
  if (!outcome.ok && 'restart' in outcome) return restartSignIn(services, req, res, outcome.returnTo);
  if (!outcome.ok) return sendSignInFailure(services, req, res, outcome);
  const { cookieValue } = await services.sessions.create(outcome.session);
  services.metrics.sessionCreated();
  services.audit.record({ event: 'login', user: outcome.session.user, method: 'session', ...requestAuditFields(services, req) });
  const sessionCookies = services.cookies.session(cookieValue);
  if (services.config.session.cookie.sameSite !== 'strict') return redirect(res, outcome.returnTo, sessionCookies);
  // A redirect would go on with the navigation the provider's page started: another site's, for
  // which the browser holds a Strict cookie back, and the portal page would send the user to sign in
  // again. A page of the sidecar's own that moves on is a navigation of this site.
  sendHtml(
    res,
    200,
    { title: 'Signed in', message: 'You are signed in.', requestId: String(req.headers[REQUEST_ID_HEADER]), link: { href: outcome.returnTo, text: 'Continue' }, refreshTo: outcome.returnTo },
    { 'set-cookie': sessionCookies },
  );
}

/**
 * A callback whose state is bound to another binding than the browser's (tabs racing, or another
 * browser's callback): if another tab has signed the browser in meanwhile, on to the page; else the
 * sign-in starts again with the browser's binding.
 */
async function restartSignIn(services: Services, req: IncomingMessage, res: ServerResponse, returnTo: string): Promise<void> {
  services.logger.info({ requestId: req.headers[REQUEST_ID_HEADER] }, "sign-in callback with another browser binding's state: not used; the sign-in starts again");
  if (await authenticateSession(services, req)) return redirect(res, returnTo);
  return startSignIn(services, req, res, returnTo, true);
}

function sendSignInFailure(services: Services, req: IncomingMessage, res: ServerResponse, failure: SignInFailure): void {
  services.audit.record({ event: 'login_failed', user: failure.user, method: 'session', code: failure.code, reason: failure.reason, ...requestAuditFields(services, req) });
  const retryPath = failure.returnTo ? new URL(failure.returnTo).pathname + new URL(failure.returnTo).search : '/';
  sendHtml(res, failure.status, {
    title: failure.status === 403 ? 'Access denied' : 'Sign-in failed',
    message: failure.status === 403 ? 'You could not be signed in to this portal.' : 'Sign-in failed. Please try again.',
    detail: services.config.errors.detailed ? failure.reason : undefined,
    requestId: String(req.headers[REQUEST_ID_HEADER]),
    link: { href: `${services.prefix}/start?rd=${encodeURIComponent(retryPath)}`, text: 'Sign in again' },
  });
}

/**
 * Ends the session (store record and cookie), revokes its tokens at the provider, then goes to the
 * provider's end-session endpoint, the configured logoff page, or the sidecar's signed-out page.
 */
export async function signOut(services: Services, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { config, sessions, cookies, provider } = services;
  const cookie = cookies.readSession(req);
  const resumed = cookie === undefined ? undefined : await sessions.resume(cookie);
  if (!resumed?.ok) return sendSignedOut(services, req, res, cookie !== undefined);
  // Another site can link here or post a form: it must not sign the user out unasked.
  if (isCrossSite(req.headers, services.publicOrigin)) return sendSignOutConfirmation(services, req, res);
  const { session, handle } = resumed;
  await sessions.end(handle);
  services.metrics.sessionsEnded('logout');
  services.audit.record({ event: 'logout', user: session.user, method: 'session', reason: 'the user signed out', ...requestAuditFields(services, req) });
  if (config.logout.revokeTokens) {
    if (session.refreshToken) void provider.revoke(session.refreshToken, 'refresh_token');
    if (session.accessToken) void provider.revoke(session.accessToken, 'access_token');
  }
  const afterLogout = config.logout.redirectUrl ?? `${services.publicOrigin}${services.prefix}/sign_out`;
  const endSession = config.logout.idpLogout ? provider.endSessionUrl(session.idToken, afterLogout) : null;
  redirect(res, endSession?.href ?? afterLogout, cookies.clearSession());
}

/** Shown when no session is left: after the provider's logout, or when there was none. */
function sendSignedOut(services: Services, req: IncomingMessage, res: ServerResponse, hadCookie: boolean): void {
  const { redirectUrl } = services.config.logout;
  const clear = hadCookie ? services.cookies.clearSession() : [];
  if (redirectUrl) return redirect(res, redirectUrl, clear);
  sendHtml(
    res,
    200,
    {
      title: 'Signed out',
      message: 'You have signed out of the portal.',
      requestId: String(req.headers[REQUEST_ID_HEADER]),
      link: { href: '/', text: 'Sign in again' },
    },
    clear.length > 0 ? { 'set-cookie': clear } : {},
  );
}

/** Asks before signing out: the button posts to sign_out from the sidecar's own page, so it is not cross-site. */
function sendSignOutConfirmation(services: Services, req: IncomingMessage, res: ServerResponse): void {
  sendHtml(res, 200, {
    title: 'Sign out?',
    message: 'Another site sent you here to sign out of the portal.',
    requestId: String(req.headers[REQUEST_ID_HEADER]),
    form: { action: `${services.prefix}/sign_out`, button: 'Sign out' },
    link: { href: '/', text: 'Stay signed in' },
  });
}

function sendProviderUnavailable(services: Services, req: IncomingMessage, res: ServerResponse): void {
  sendHtml(res, 503, {
    title: 'Sign-in unavailable',
    message: 'The identity provider cannot be reached right now. Please try again in a moment.',
    detail: services.config.errors.detailed ? 'the identity provider metadata is not loaded (discovery is being retried)' : undefined,
    requestId: String(req.headers[REQUEST_ID_HEADER]),
  }, { 'retry-after': '5' });
}
