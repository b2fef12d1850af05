import type { Logger } from '../log/index.js';

/** Audit event names (DESIGN.md §7, contract). */
export type AuditEventName =
  | 'login'
  | 'login_failed'
  | 'logout'
  | 'session_expired'
  | 'token_refreshed'
  | 'refresh_failed'
  | 'api_auth'
  | 'api_auth_failed'
  | 'backchannel_logout';

/** One authentication event. Never carries a token, secret or cookie. */
export interface AuditEvent {
  event: AuditEventName;
  user?: string;
  clientId?: string;
  method?: string;
  ip?: string;
  userAgent?: string;
  requestId?: string;
  /** The precise reason, for failures and for how a session ended. */
  reason?: string;
}

export interface AuditLog {
  record(event: AuditEvent): void;
}

/** Writes each event as one JSON line (`"log":"audit"`) through the process logger. */
export function createAuditLog(logger: Logger, enabled: boolean): AuditLog {
  if (!enabled) return { record: () => undefined };
  const audit = logger.child({ log: 'audit' });
  return {
    record(event) {
      audit.info(event, event.event);
    },
  };
}
