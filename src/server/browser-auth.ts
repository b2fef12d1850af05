import type { IncomingMessage } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AuditEvent } from '../audit/index.js';
import { errorSummary, ProviderUnavailableError } from '../oidc/provider.js';
import { AccessWithdrawnError } from '../oidc/sign-in.js';
import type { Session } from '../session/session.js';
import type { SessionHandle } from '../session/sessions.js';
import { requestAuditFields, type Services } from './services.js';

/** Tokens are renewed this long before they expire, so a request never carries an expired one. */
const TOKEN_EXPIRY_LEEWAY_MS = 5_000;
/** Waits between tries to save a renewed session; a try is made only if it ends before the refresh lock does. */
const SAVE_RENEWED_RETRY_DELAYS_MS = [250, 1_000, 3_000];
/** The longest one save can take: the record and, when the e-mail changed, its index entries (2 s each). */
const SAVE_MAX_MS = 4_000;

/**
 * The browser session of `req` when it can be told without waiting — the usual case: no cookie, a
 * bad one, or a current session whose record the store holds locally and whose tokens are not due.
 * Undefined when `authenticateSession` must be awaited.
 */
export function authenticateSessionNow(services: Services, req: IncomingMessage): Session | null | undefined {
  const resumed = services.sessions.resumeNow(services.cookies.readSession(req));
  if (!resumed) return undefined;
  if (!resumed.ok) return null;
  return tokensDue(resumed.session, services.clock()) ? undefined : resumed.session;
}

/**
 * The browser session of `req`, with its tokens renewed when they are due, or null when there is
 * none: no cookie, a tampered or unknown one, an ended session, or tokens that expired and could
 * not be renewed. Never throws for a bad cookie: a bad cookie means "sign in".
 */
export async function authenticateSession(services: Services, req: IncomingMessage): Promise<Session | null> {
  const cookie = services.cookies.readSession(req);
  if (cookie === undefined) return null;
  const resumed = await services.sessions.resume(cookie);
  if (!resumed.ok) {
    if (resumed.reason === 'expired') {
      services.metrics.sessionsEnded('expired');
      services.audit.record({
        event: 'session_expired',
        user: resumed.session.user,
        method: 'session',
        code: 'max_lifetime',
        reason: 'the session reached session.maxLifetimeHours',
        ...requestAuditFields(services, req),
      });
    }
    return null;
  }
  const { session, handle } = resumed;
  if (!tokensDue(session, services.clock())) return session;
  return renewTokens(services, req, cookie, handle, session);
}

function tokensDue(session: Session, now: number): boolean {
  return session.tokenExpiresAt !== undefined && now >= session.tokenExpiresAt - TOKEN_EXPIRY_LEEWAY_MS;
}

/** Refreshes once across all replicas; the others wait and read the renewed session. */
async function renewTokens(services: Services, req: IncomingMessage, cookie: string, handle: SessionHandle, session: Session): Promise<Session | null> {
  const auditFields = { user: session.user, method: 'session', ...requestAuditFields(services, req) };
  if (!services.config.session.refreshTokens || !session.refreshToken) {
    await services.sessions.end(handle);
    services.metrics.sessionsEnded('expired');
    const reason = services.config.session.refreshTokens ? 'the tokens expired and the provider gave no refresh token' : 'the tokens expired and session.refreshTokens is off';
    services.audit.record({ event: 'session_expired', code: 'tokens_expired', reason, ...auditFields });
    return null;
  }
  const renewed = await services.sessions.withRefreshLock(handle, async (lockExpiresAt) => {
    let refreshed: Session;
    try {
      refreshed = await services.signIn.refresh(session);
    } catch (error) {
      // The provider refusing the refresh (or the authorization rules refusing its claims) ends
      // the session; a store or provider outage (unreachable, too slow, a 5xx) propagates instead
      // and is answered 503, the session kept for a later try.
      if (error instanceof ProviderUnavailableError) throw error;
      await endAfterFailedRefresh(services, handle, auditFields, error);
      return 'ended';
    }
    return (await saveRenewed(services, handle, refreshed, lockExpiresAt)) ? refreshed : null;
  });
  if (renewed === 'ended') return null;
  if (renewed) {
    services.metrics.tokenRefresh('success');
    services.audit.record({ event: 'token_refreshed', ...auditFields });
    return renewed;
  }
  // Another request (or replica) held the refresh: its outcome is in the store.
  const reloaded = await services.sessions.resume(cookie);
  if (!reloaded.ok) return null;
  if (!tokensDue(reloaded.session, services.clock())) return reloaded.session;
  // The session stands but its tokens were not renewed: the provider is failing, or the refresh is
  // still running elsewhere. Not a reason to sign the user out.
  throw new ProviderUnavailableError('the tokens are due and were not renewed by the refresh that held the lock');
}

/**
 * Saves a renewed session, trying again while the store fails and the refresh lock lasts (after it,
 * another replica could refresh with the old token): the provider may have rotated the refresh
 * token, so the one still in the store may no longer work — a rotated refresh token must not be
 * lost to a store that stumbled for a moment (DESIGN.md §6).
 */
async function saveRenewed(services: Services, handle: SessionHandle, renewed: Session, lockExpiresAt: number): Promise<boolean> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await services.sessions.update(handle, renewed);
    } catch (error) {
      const delayMs = SAVE_RENEWED_RETRY_DELAYS_MS[attempt];
      if (delayMs === undefined || performance.now() + delayMs + SAVE_MAX_MS > lockExpiresAt) {
        services.logger.error({ err: error, user: renewed.user }, 'the renewed session could not be saved: its new refresh token is lost, the next refresh may sign the user out');
        throw error;
      }
      services.logger.warn({ err: error, user: renewed.user }, 'saving the renewed session failed; trying again');
      await sleep(delayMs);
    }
  }
}

async function endAfterFailedRefresh(services: Services, handle: SessionHandle, auditFields: Omit<AuditEvent, 'event'>, error: unknown): Promise<void> {
  services.metrics.tokenRefresh('failure');
  await services.sessions.end(handle);
  services.metrics.sessionsEnded('refresh_failed');
  const failure =
    error instanceof AccessWithdrawnError
      ? { code: 'not_allowed', reason: `the renewed claims no longer pass the authorization rules: ${error.message}` }
      : { reason: `token refresh failed: ${errorSummary(error).message}` };
  services.audit.record({ event: 'refresh_failed', ...failure, ...auditFields });
}

