import type { Config } from '../config/schema.js';
import { createRedisClient } from '../session/redis-store.js';
import { AUDIT_EVENTS, type AuditEventName, type AuditRecord } from './events.js';
import { AuditStream, type AuditQuery } from './stream.js';

/** `oidc-sidecar audit`'s own options (beside `--config`). */
export const AUDIT_OPTIONS = {
  user: { type: 'string', short: 'u' },
  client: { type: 'string' },
  event: { type: 'string', short: 'e' },
  since: { type: 'string' },
  until: { type: 'string' },
  limit: { type: 'string', short: 'n' },
  json: { type: 'boolean' },
} as const;

export const AUDIT_USAGE = 'audit [--config FILE] [FILTERS] [--json]';
export const AUDIT_SUMMARY = 'print audit events of the Redis stream; FILTERS: --user U --client C --event E --since/--until 2h|ISO --limit N';

/** A subcommand's parsed options, as `node:util` parseArgs gives them. */
export type OptionValues = Record<string, string | boolean | (string | boolean)[] | undefined>;
/** Where a subcommand writes. */
export interface Output {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const DEFAULT_LIMIT = 100;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const COLUMNS: ReadonlyArray<[string, keyof AuditRecord]> = [
  ['TIME', 'time'],
  ['EVENT', 'event'],
  ['USER', 'user'],
  ['CLIENT', 'clientId'],
  ['METHOD', 'method'],
  ['IP', 'ip'],
  ['REASON', 'reason'],
];

/**
 * Prints the newest audit events of the Redis stream that match the options, oldest first: a table,
 * or one JSON object a line with `--json`. Resolves to the exit code (0, 1 on failure, 2 on bad options).
 */
export async function runAuditCommand(config: Config, values: OptionValues, io: Output, localClock: () => number = Date.now): Promise<number> {
  let query: AuditQuery;
  try {
    query = parseQuery(values, localClock());
  } catch (error) {
    io.stderr.write(`oidc-sidecar audit: ${(error as Error).message}\n`);
    return 2;
  }
  if (config.session.store !== 'redis') {
    io.stderr.write(`oidc-sidecar audit: the audit stream is kept in Redis, and session.store is "${config.session.store}"; with it, audit events go to the log (stdout) only\n`);
    return 1;
  }
  let connectionError: Error | undefined;
  const client = createRedisClient(config.redis, (error) => (connectionError = error));
  try {
    // Relative times (`--since 2h`) count back from the stream's clock, Redis's, not this machine's.
    const [seconds, microseconds] = await client.time();
    query = parseQuery(values, Number(seconds) * 1000 + Math.floor(Number(microseconds) / 1000));
    const records = await new AuditStream(client, config.audit.stream.maxLength).read(query);
    io.stdout.write(values.json ? records.map((record) => JSON.stringify(record) + '\n').join('') : formatTable(records));
    return 0;
  } catch (error) {
    io.stderr.write(`oidc-sidecar audit: cannot read the audit stream: ${(connectionError ?? (error as Error)).message}\n`);
    return 1;
  } finally {
    client.disconnect();
  }
}

/** The query of the command line; throws with a message naming the bad option. */
export function parseQuery(values: OptionValues, now: number): AuditQuery {
  const text = (name: string) => (typeof values[name] === 'string' ? (values[name] as string) : undefined);
  const event = text('event');
  if (event !== undefined && !(AUDIT_EVENTS as readonly string[]).includes(event)) {
    throw new Error(`--event: "${event}" is not an audit event (${AUDIT_EVENTS.join(', ')})`);
  }
  const limit = text('limit') === undefined ? DEFAULT_LIMIT : Number(text('limit'));
  if (!Number.isInteger(limit) || limit < 1) throw new Error('--limit: expected a whole number above 0');
  return {
    user: text('user'),
    clientId: text('client'),
    event: event as AuditEventName | undefined,
    since: parseTime('--since', text('since'), now),
    until: parseTime('--until', text('until'), now),
    limit,
  };
}

/** `2h`, `30m`, `7d`, … ago, or an ISO 8601 date/time. */
function parseTime(option: string, value: string | undefined, now: number): Date | undefined {
  if (value === undefined) return undefined;
  const relative = /^(\d+)([smhdw])$/.exec(value);
  if (relative) return new Date(now - Number(relative[1]) * UNIT_MS[relative[2]!]!);
  const absolute = /^\d{4}-\d{2}-\d{2}/.test(value) ? Date.parse(value) : NaN;
  if (Number.isNaN(absolute)) throw new Error(`${option}: expected a duration ago (45s, 30m, 2h, 7d, 1w) or an ISO 8601 time, not "${value}"`);
  return new Date(absolute);
}

function formatTable(records: AuditRecord[]): string {
  if (records.length === 0) return 'no matching audit events\n';
  const rows = [COLUMNS.map(([title]) => title), ...records.map((record) => COLUMNS.map(([, field]) => printable(record[field])))];
  const widths = COLUMNS.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => (column === COLUMNS.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ') + '\n').join('');
}

/** A cell: `-` when absent; control characters (a terminal's escape sequences) shown as `\xNN`. */
function printable(value: string | undefined): string {
  if (value === undefined || value === '') return '-';
  return value.replace(/\p{Cc}/gu, (char) => `\\x${char.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
