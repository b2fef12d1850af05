import { AuditStream, type AuditRecord } from '../audit/index.js';
import type { OptionValues, Output } from '../audit/command.js';
import type { Config } from '../config/schema.js';
import { createRedisClient, RedisStore } from './redis-store.js';
import { SessionManager, type SessionListing } from './sessions.js';
import { systemClock, type Clock } from './store.js';
import { SESSION_ID } from './ticket.js';

/** `oidc-sidecar sessions`' own options (beside `--config`). */
export const SESSIONS_OPTIONS = {
  user: { type: 'string', short: 'u' },
  session: { type: 'string' },
  json: { type: 'boolean' },
} as const;

export const SESSIONS_USAGE = 'sessions list --user U [--json] | revoke (--user U | --session ID)';
export const SESSIONS_SUMMARY = "list or end sessions in the Redis store; U: a user's name, e-mail or subject";

/** What the command line asks for. */
type SessionsRequest = { action: 'list'; user: string; json: boolean } | { action: 'revoke'; user: string } | { action: 'revoke'; session: string };

/** The audit `method` of a session ended from the command line. */
const COMMAND_LINE = 'cli';

/**
 * `oidc-sidecar sessions list|revoke`: the sessions of a user, one a line (a table, or JSON lines
 * with `--json`), or ends them — every session of a user, or one by id. An ended session is
 * refused by every replica at its next request. Resolves to the exit code (0, 1 on failure, 2 on
 * bad arguments).
 */
export async function runSessionsCommand(config: Config, positionals: readonly string[], values: OptionValues, io: Output, clock: Clock = systemClock): Promise<number> {
  let request: SessionsRequest;
  try {
    request = parseRequest(positionals, values);
  } catch (error) {
    io.stderr.write(`oidc-sidecar sessions: ${(error as Error).message}\nusage: oidc-sidecar ${SESSIONS_USAGE}\n`);
    return 2;
  }
  if (config.session.store !== 'redis') {
    io.stderr.write(`oidc-sidecar sessions: session.store is "${config.session.store}": its sessions live in the sidecar's own memory, out of reach of this command\n`);
    return 1;
  }
  let connectionError: Error | undefined;
  const client = createRedisClient(config.redis, (error) => (connectionError = error));
  const store = new RedisStore(client, { localCopies: false });
  const sessions = new SessionManager({ store, secret: config.session.secret, idleTimeoutMs: config.session.idleTimeoutMinutes * 60_000, clock });
  const audit = config.audit.enabled ? new AuditStream(client, config.audit.stream.maxLength) : undefined;
  try {
    if (request.action === 'list') {
      const listed = await sessions.listByUser(request.user);
      io.stdout.write(request.json ? listed.map((session) => JSON.stringify(listingJson(session, clock())) + '\n').join('') : formatListing(listed, clock()));
      return 0;
    }
    if ('user' in request) {
      const ended = await sessions.endByUser(request.user);
      await audit?.append(revoked(clock, `${ended} session(s) ended by \`oidc-sidecar sessions revoke --user\``, request.user));
      io.stdout.write(`ended ${ended} session(s)\n`);
      if (ended === 0) io.stderr.write(`oidc-sidecar sessions: no current session of "${request.user}" (a user name or e-mail in any case, or the exact subject)\n`);
      return 0;
    }
    if (!(await sessions.endById(request.session))) {
      io.stderr.write(`oidc-sidecar sessions: no current session ${request.session} (it ended, or the id is mistyped)\n`);
      return 1;
    }
    await audit?.append(revoked(clock, `session ${request.session} ended by \`oidc-sidecar sessions revoke --session\``));
    io.stdout.write(`ended session ${request.session}\n`);
    return 0;
  } catch (error) {
    io.stderr.write(`oidc-sidecar sessions: cannot reach the session store: ${(connectionError ?? (error as Error)).message}\n`);
    return 1;
  } finally {
    await store.close();
  }
}

function parseRequest(positionals: readonly string[], values: OptionValues): SessionsRequest {
  const [action, ...extra] = positionals;
  if (action !== 'list' && action !== 'revoke') throw new Error(action === undefined ? 'say list or revoke' : `"${action}" is not list or revoke`);
  if (extra.length > 0) throw new Error(`unexpected argument "${extra[0]}"`);
  const user = typeof values.user === 'string' ? values.user : undefined;
  const session = typeof values.session === 'string' ? values.session : undefined;
  if (user === '') throw new Error('--user: empty');
  if (action === 'list') {
    if (session !== undefined) throw new Error('list takes --user, not --session');
    if (user === undefined) throw new Error('list needs --user');
    return { action, user, json: values.json === true };
  }
  if (values.json !== undefined) throw new Error('--json is for list');
  if ((user === undefined) === (session === undefined)) throw new Error('revoke needs one of --user or --session');
  if (user !== undefined) return { action, user };
  if (!SESSION_ID.test(session!)) throw new Error('--session: not a session id (43 characters of A-Z, a-z, 0-9, - and _, as list prints them)');
  return { action, session: session! };
}

function revoked(clock: Clock, reason: string, user?: string): AuditRecord {
  return { time: new Date(clock()).toISOString(), event: 'logout', user, method: COMMAND_LINE, code: 'revoked', reason };
}

function listingJson(session: SessionListing, now: number): { session: string; idleTimeoutAt: string } {
  return { session: session.id, idleTimeoutAt: new Date(now + session.idleTimeoutInMs).toISOString() };
}

function formatListing(listed: SessionListing[], now: number): string {
  if (listed.length === 0) return 'no current sessions\n';
  const rows = listed.map((session) => listingJson(session, now));
  return [`${'SESSION'.padEnd(rows[0]!.session.length)}  IDLE TIME-OUT AT\n`, ...rows.map((row) => `${row.session}  ${row.idleTimeoutAt}\n`)].join('');
}
