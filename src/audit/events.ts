/** Audit event names (DESIGN.md §7, contract). */
export const AUDIT_EVENTS = [
  'login',
  'login_failed',
  'logout',
  'session_expired',
  'token_refreshed',
  'refresh_failed',
  'api_auth',
  'api_auth_failed',
  'backchannel_logout',
] as const;
export type AuditEventName = (typeof AUDIT_EVENTS)[number];

/** One authentication event. Never carries a token, secret or cookie. */
export interface AuditEvent {
  event: AuditEventName;
  /** The user's name (as in `X-Forwarded-User`), when known. */
  user?: string;
  /** The machine client's id, when known. */
  clientId?: string;
  /**
   * How the user or client authenticated, or which channel ended the session: an `X-Auth-Method`
   * value (`session`, `bearer`, `client-credentials`, `client-certificate`), `backchannel` /
   * `frontchannel`, or `cli` (`oidc-sidecar sessions revoke`). A fixed set: it is a metric label.
   */
  method?: string;
  ip?: string;
  userAgent?: string;
  requestId?: string;
  /** The precise reason, for failures and for how a session ended. */
  reason?: string;
  /**
   * A stable, short code of a failure (`unknown_state`, `access_denied`, `expired`, …): kept in the
   * record and used as the `result` label of `auth_events_total`. Default: `failure` for the `*_failed`
   * events, `success` for the others. Keep it to a fixed set: it is a metric label.
   */
  code?: string;
}

/** An event as written: with the time it happened (ISO 8601). */
export type AuditRecord = AuditEvent & { time: string };
