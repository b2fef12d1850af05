import type { Logger } from '../log/index.js';
import type { Metrics } from '../metrics/index.js';
import { systemClock, type Clock } from '../session/store.js';
import type { AuditEvent, AuditRecord } from './events.js';
import { FailureQuota } from './failure-quota.js';
import type { AuditStream } from './stream.js';

export interface AuditLog {
  /**
   * Records an event: one JSON line on stdout, the Redis stream when there is one, and
   * `auth_events_total`. Never throws and never waits: the request goes on at once. Failures
   * anyone can cause at will are written one by one up to a quota, then summarized (FailureQuota).
   */
  record(event: AuditEvent): void;
  /** Writes the summaries of failures held back so far, and stops the quota's timer. */
  close(): void;
}

export interface AuditLogOptions {
  logger: Logger;
  /** `audit.enabled`: when off, events are only counted. */
  enabled: boolean;
  /** Every event is counted (`auth_events_total`), whether the log is enabled or not. */
  metrics: Metrics;
  /** The Redis stream, with the Redis store. */
  stream?: AuditStream;
  clock?: Clock;
}

const MAX_REASON_LENGTH = 500;

/**
 * The audit log of DESIGN.md §7: stdout (`"log":"audit"`), the Redis stream, and the event counter.
 * A stream write is not awaited: a failure is counted (`session_store_errors_total{operation=
 * "audit_append"}`) and logged, and never fails the request.
 */
export function createAuditLog({ logger, enabled, metrics, stream, clock = systemClock }: AuditLogOptions): AuditLog {
  // Its own level: `log.level: warn` quiets the logs, not the audit trail (`audit.enabled` does that).
  const audit = logger.child({ log: 'audit' }, { level: 'info' });
  const append = (to: AuditStream, record: AuditRecord) =>
    metrics.store.time('audit_append', () => to.append(record)).catch((error: unknown) => {
      logger.warn({ err: error, event: record.event, requestId: record.requestId }, 'writing an audit event to the Redis stream failed');
    });
  const write = (event: AuditEvent) => {
    const bounded = boundReason(event);
    audit.info(bounded, event.event);
    if (stream) void append(stream, { time: new Date(clock()).toISOString(), ...bounded });
  };
  const quota = new FailureQuota(clock, write);
  return {
    record(event) {
      metrics.authEvent(event.event, event.method ?? 'none', resultOf(event));
      if (enabled && quota.admit(event)) write(event);
    },
    close: () => quota.close(),
  };
}

function boundReason(event: AuditEvent): AuditEvent {
  if (!event.reason || event.reason.length <= MAX_REASON_LENGTH) return event;
  return { ...event, reason: event.reason.slice(0, MAX_REASON_LENGTH) + '…' };
}

function resultOf(event: AuditEvent): string {
  return event.code ?? (event.event.endsWith('_failed') ? 'failure' : 'success');
}
