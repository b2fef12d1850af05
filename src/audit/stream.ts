import type { RedisClient } from '../session/redis-store.js';
import type { AuditEventName, AuditRecord } from './events.js';

/** The stream's key after `redis.keyPrefix` (ioredis adds the prefix): `<keyPrefix>authlog`. */
const AUDIT_STREAM_KEY = 'authlog';

/** The record fields, in the order they are written. */
const FIELDS = ['time', 'event', 'user', 'clientId', 'method', 'ip', 'userAgent', 'requestId', 'reason', 'code'] as const satisfies ReadonlyArray<keyof AuditRecord>;

/** How many entries one XREVRANGE reads while filtering. */
const PAGE_SIZE = 500;

/** Which records to read: every filter given must match; the newest `limit` matches are returned. */
export interface AuditQuery {
  user?: string;
  clientId?: string;
  event?: AuditEventName;
  /** From this time on (inclusive), by the stream's own time (the Redis server's clock). */
  since?: Date;
  /** Up to this time (inclusive). */
  until?: Date;
  limit: number;
}

type StreamEntry = [id: string, fields: string[]];

/**
 * The capped Redis stream of audit events (`XADD … MAXLEN ~ audit.stream.maxLength`), over the
 * session store's own Redis connection. Redis trims the oldest entries: that is the retention.
 */
export class AuditStream {
  constructor(
    private readonly client: RedisClient,
    private readonly maxLength: number,
  ) {}

  /** Appends one record. */
  async append(record: AuditRecord): Promise<void> {
    const fields: string[] = [];
    for (const field of FIELDS) {
      const value = record[field];
      if (value !== undefined) fields.push(field, value);
    }
    await this.client.xadd(AUDIT_STREAM_KEY, 'MAXLEN', '~', this.maxLength, '*', ...fields);
  }

  /** The newest records matching `query`, oldest first. */
  async read(query: AuditQuery): Promise<AuditRecord[]> {
    const matches: AuditRecord[] = [];
    const start = query.since ? String(query.since.getTime()) : '-';
    let end = query.until ? String(query.until.getTime()) : '+';
    while (matches.length < query.limit) {
      const page = (await this.client.xrevrange(AUDIT_STREAM_KEY, end, start, 'COUNT', PAGE_SIZE)) as StreamEntry[];
      for (const [, fields] of page) {
        const record = toRecord(fields);
        if (matchesQuery(record, query) && matches.push(record) === query.limit) break;
      }
      if (page.length < PAGE_SIZE) break;
      end = '(' + page.at(-1)![0];
    }
    return matches.reverse();
  }
}

function toRecord(fields: string[]): AuditRecord {
  const record: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) record[fields[i]!] = fields[i + 1]!;
  return record as unknown as AuditRecord;
}

function matchesQuery(record: AuditRecord, query: AuditQuery): boolean {
  if (query.event && record.event !== query.event) return false;
  if (query.clientId && record.clientId !== query.clientId) return false;
  if (query.user && record.user?.toLowerCase() !== query.user.toLowerCase()) return false;
  return true;
}
