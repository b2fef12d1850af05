import type { Logger } from '../log/index.js';
import type { Metrics } from '../metrics/index.js';
import type { AuditEvent, AuditRecord } from './events.js';
import type { AuditStream } from './stream.js';

export interface AuditLog {
  /**
   * Records an event: one JSON line on stdout, the Redis stream when there is one, and
   * `auth_events_total`. Never throws and never waits: the request goes on at once.
   */
  record(event: AuditEvent): void;
}

export interface AuditLogOptions {
  logger: Logger;
  /** `audit.enabled`: when off, events are only counted. */
  enabled: boolean;
  /** Every event is counted (`auth_events_total`), whether the log is enabled or not. */
  metrics: Metrics;
  /** The Redis stream, with the Redis store. */
  stream?: AuditStream;
}

const MAX_REASON_LENGTH = 500;

/**
 * The audit log of DESIGN.md §7: stdout (`"log":"audit"`), the Redis stream, and the event counter.
 * A stream write is not awaited: a failure is counted (`session_store_errors_total{operation=
 * "audit_append"}`) and logged, and never fails the request.
 */
export function createAuditLog({ logger, enabled, metrics, stream }: AuditLogOptions): AuditLog {
  const audit = logger.child({ log: 'audit' });
  const append = (to: AuditStream, record: AuditRecord) =>
    metrics.store.time('audit_append', () => to.append(record)).catch((error: unknown) => {
      logger.warn({ err: error, event: record.event, requestId: record.requestId }, 'writing an audit event to the Redis stream failed');
    });
  return {
    record(event) {
      metrics.authEvent(event.event, event.method ?? 'none', resultOf(event));
      if (!enabled) return;
      const bounded = boundReason(event);
      audit.info(bounded, event.event);
      if (stream) void append(stream, { time: new Date().toISOString(), ...bounded });
    },
  };
}

function boundReason(event: AuditEvent): AuditEvent {
  if (!event.reason || event.reason.length <= MAX_REASON_LENGTH) return event;
  return { ...event, reason: event.reason.slice(0, MAX_REASON_LENGTH) + '…' };
}

function resultOf(event: AuditEvent): string {
  return event.code ?? (event.event.endsWith('_failed') ? 'failure' : 'success');
}
