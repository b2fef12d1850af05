import type { IncomingMessage, ServerResponse } from 'node:http';
import { LogoutTokenError, type LogoutTarget } from '../oidc/logout-token.js';
import { sha256Base64url } from '../session/crypto.js';
import { BodyError, readFormBody } from './body.js';
import { sendJson } from './responses.js';
import { requestAuditFields, type Services } from './services.js';

const MAX_LOGOUT_BODY_BYTES = 64 * 1024;

/**
 * OpenID Connect Back-Channel Logout 1.0: the provider posts a signed logout token; every session of
 * the named IdP session (`sid`) or user (`sub`) ends, on every replica (the store is shared).
 * A token is accepted once (its `jti` is remembered until it expires).
 */
export async function backchannelLogout(services: Services, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const auditFields = { method: 'backchannel', ...requestAuditFields(services, req) };
  const refuse = (status: number, why: string) => {
    services.audit.record({ event: 'backchannel_logout', code: 'refused', reason: `back-channel logout refused: ${why}`, ...auditFields });
    sendJson(res, status, { error: 'invalid_request', error_description: 'The logout token is not acceptable.' });
  };
  let target: LogoutTarget;
  try {
    const form = await readFormBody(req, MAX_LOGOUT_BODY_BYTES);
    target = await services.provider.logoutTokens().verify(form.get('logout_token') ?? '');
  } catch (error) {
    // Only a bad request or token is the provider's fault; anything else (keys unreachable, provider
    // metadata not loaded) propagates as a 503, so the provider retries.
    if (error instanceof BodyError) return refuse(error.status, error.message);
    if (error instanceof LogoutTokenError) return refuse(400, error.message);
    throw error;
  }
  const jtiKey = `logout-jti:${sha256Base64url(target.jti)}`;
  const releaseJti = await services.store.tryLock(jtiKey, Math.max(1000, target.exp * 1000 - services.clock()));
  if (!releaseJti) return refuse(400, 'the logout token was already used');
  let ended: number;
  try {
    ended = target.sid ? await services.sessions.endBySid(target.sid) : await services.sessions.endByUser(target.sub!);
  } catch (error) {
    await releaseJti().catch(() => undefined); // the provider's retry must not be taken for a replay
    throw error;
  }
  services.metrics.sessionsEnded('backchannel', ended);
  services.audit.record({ event: 'backchannel_logout', user: target.sub, reason: `${ended} session(s) ended by the identity provider`, ...auditFields });
  res.writeHead(200, { 'cache-control': 'no-store', 'content-length': '0' });
  res.end();
}

/**
 * OpenID Connect Front-Channel Logout 1.0 (Azure AD sends `sid` only): loaded by the provider in an
 * iframe; ends the sessions of that IdP session. An `iss`, when given, must be the provider's.
 */
export async function frontchannelLogout(services: Services, req: IncomingMessage, res: ServerResponse, rawQuery: string): Promise<void> {
  const query = new URLSearchParams(rawQuery);
  const sid = query.get('sid');
  const issuer = query.get('iss');
  if (sid && sid.length <= 256 && (!issuer || issuer === services.provider.issuer())) {
    const ended = await services.sessions.endBySid(sid);
    services.metrics.sessionsEnded('frontchannel', ended);
    // Anyone can call this with a made-up sid: only a logout that ended something is an event.
    if (ended > 0) services.audit.record({ event: 'logout', method: 'frontchannel', reason: `${ended} session(s) ended by front-channel logout`, ...requestAuditFields(services, req) });
  }
  res.writeHead(200, { 'cache-control': 'no-store', 'content-type': 'text/html; charset=utf-8', 'content-length': '0' });
  res.end();
}
