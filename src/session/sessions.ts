import { createHmac } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { setBounded } from './bounded.js';
import { deriveKey, open, seal } from './crypto.js';
import type { Session } from './session.js';
import { systemClock, type Clock, type KeyValueStore } from './store.js';
import { sessionIdOfStoreKey, sessionStoreKey, storeKeyOfSession, TicketCodec, type Ticket } from './ticket.js';

/** A session as `oidc-sidecar sessions list` shows it. */
export interface SessionListing {
  /** base64url(SHA-256(ticket id)): names the record, and cannot be turned into a cookie. */
  id: string;
  /** Milliseconds until the idle time-out ends the session, unless it is used meanwhile. */
  idleTimeoutInMs: number;
}

export interface SessionManagerOptions {
  store: KeyValueStore;
  /** `session.secret`: signs the cookie tickets and keys the indexes. */
  secret: string;
  /** Sliding idle time-out (`session.idleTimeoutMinutes`). */
  idleTimeoutMs: number;
  clock?: Clock;
  /** Errors of work done off the request path (lazy TTL extension, lock release). */
  onError?: (error: unknown) => void;
  /** How many decrypted sessions (and extension times) are remembered; default 10 000. */
  cacheSize?: number;
}

declare const opaque: unique symbol;
/** Names one session for `update`, `end` and `withRefreshLock`; callers only pass it back. */
export interface SessionHandle {
  readonly [opaque]: true;
}

type NoSession = { ok: false; reason: 'absent' | 'invalid' | 'unknown' };
type Resumed = { ok: true; session: Session; handle: SessionHandle };

export type ResumeResult =
  | Resumed
  | NoSession
  /** The session reached its absolute lifetime: it has just been ended. */
  | { ok: false; reason: 'expired'; session: Session };

interface HandleState {
  readonly ticket: Ticket;
  readonly storeKey: string;
  session: Session;
  /** The record as this handle last read or wrote it. */
  sealed: Buffer;
}

interface DecodedCookie {
  readonly ticket: Ticket;
  readonly storeKey: string;
}

/** A session past its absolute lifetime, found while resuming: it must be ended. */
interface Expired {
  ok: false;
  reason: 'expired';
  session: Session;
  handle: SessionHandle;
}

interface CacheEntry {
  readonly sealed: Buffer;
  readonly key: Buffer;
  readonly session: Session;
}

const ABSENT: NoSession = { ok: false, reason: 'absent' };
const INVALID: NoSession = { ok: false, reason: 'invalid' };
const UNKNOWN: NoSession = { ok: false, reason: 'unknown' };

/**
 * Longer than a refresh it guards — reading the record (2 s at most), the token request (10 s),
 * Microsoft Graph for a group overage (10 s), saving the record (4 s; tried again only while the
 * lock lasts: see browser-auth.ts) — so that no other replica refreshes with the same refresh token meanwhile.
 */
const REFRESH_LOCK_TTL_MS = 30_000;
const LOCK_POLL_MS = 50;
/** A waiter gives up once the lock must have expired anyway. */
const MAX_LOCK_POLLS = REFRESH_LOCK_TTL_MS / LOCK_POLL_MS;
const MAX_EXTENSION_INTERVAL_MS = 60_000;

/**
 * Browser sessions: the cookie holds a signed ticket (record id + record key), the store holds the
 * session encrypted under the ticket's key with a TTL of min(idle time-out, absolute end). Indexes
 * (`user:`, `sid:` + HMAC of the value) list the record keys of a user's sessions and of an IdP
 * session, for "sign out everywhere" and back-channel logout.
 *
 * Sessions returned by `resume` are shared with a cache and (shallowly) frozen: treat them as
 * immutable, and build a new object to change one.
 */
export class SessionManager {
  readonly #store: KeyValueStore;
  readonly #codec: TicketCodec;
  readonly #indexKey: Buffer;
  readonly #idleTimeoutMs: number;
  readonly #extendEveryMs: number;
  readonly #clock: Clock;
  readonly #onError: (error: unknown) => void;
  readonly #cacheSize: number;
  readonly #cache = new Map<string, CacheEntry>();
  /** Cookie values whose signature was already checked → their ticket and store key. */
  readonly #decodedCookies = new Map<string, DecodedCookie>();
  /** Store key → when this replica last extended the record's TTL. */
  readonly #extendedAt = new Map<string, number>();

  constructor(options: SessionManagerOptions) {
    this.#store = options.store;
    this.#codec = new TicketCodec(options.secret);
    this.#indexKey = deriveKey(options.secret, 'session-index');
    this.#idleTimeoutMs = options.idleTimeoutMs;
    // The idle time-out ends up at most 10 % shorter than configured, for one write a minute at most.
    this.#extendEveryMs = Math.min(options.idleTimeoutMs / 10, MAX_EXTENSION_INTERVAL_MS);
    this.#clock = options.clock ?? systemClock;
    this.#onError = options.onError ?? (() => {});
    this.#cacheSize = options.cacheSize ?? 10_000;
  }

  /** Stores a new session and indexes it; `cookieValue` is the session cookie's value. */
  async create(session: Session): Promise<{ cookieValue: string; handle: SessionHandle }> {
    const now = this.#clock();
    const ttlMs = this.#recordTtl(session, now);
    if (ttlMs <= 0) throw new Error('cannot create a session past its absolute lifetime');
    const ticket = this.#codec.issue();
    const state: HandleState = { ticket, storeKey: sessionStoreKey(ticket), session, sealed: this.#seal(ticket, session) };
    await this.#store.set(state.storeKey, state.sealed, ttlMs);
    await this.#addToIndexes(state.storeKey, session, session.expiresAt - now);
    setBounded(this.#extendedAt, state.storeKey, now, this.#cacheSize);
    return { cookieValue: this.#codec.encode(ticket), handle: handleOf(state) };
  }

  /**
   * The session of a cookie value. One store read, none when the store has the record locally; the
   * idle TTL is extended in the background.
   */
  async resume(cookieValue: string | undefined): Promise<ResumeResult> {
    const decoded = this.#decodeCookieValue(cookieValue);
    if ('ok' in decoded) return decoded;
    const local = this.#store.peek(decoded.storeKey);
    const resumed = this.#resumeRecord(decoded, local !== undefined ? local : await this.#store.getCached(decoded.storeKey));
    if (resumed.ok || resumed.reason !== 'expired') return resumed;
    await this.end(resumed.handle);
    return { ok: false, reason: 'expired', session: resumed.session };
  }

  /**
   * `resume` without waiting, when that is possible: a missing or invalid cookie, or a record the
   * store has locally (the hot path). Undefined when the store must be read, or an expired session
   * ended: then `resume`.
   */
  resumeNow(cookieValue: string | undefined): ResumeResult | undefined {
    const decoded = this.#decodeCookieValue(cookieValue);
    if ('ok' in decoded) return decoded;
    const sealed = this.#store.peek(decoded.storeKey);
    if (sealed === undefined) return undefined;
    const resumed = this.#resumeRecord(decoded, sealed);
    return resumed.ok || resumed.reason !== 'expired' ? resumed : undefined;
  }

  /** True when `cookieValue` is a ticket signed with this secret (whether its session exists or not). */
  readonly isGenuineCookie = (cookieValue: string): boolean => this.#decodeCookie(cookieValue) !== null;

  #decodeCookieValue(cookieValue: string | undefined): DecodedCookie | NoSession {
    if (!cookieValue) return ABSENT;
    return this.#decodeCookie(cookieValue) ?? INVALID;
  }

  #resumeRecord({ ticket, storeKey }: DecodedCookie, sealed: Buffer | null): Resumed | NoSession | Expired {
    if (!sealed) return UNKNOWN;
    const session = this.#open(storeKey, ticket, sealed);
    if (!session) return INVALID;
    const handle = handleOf({ ticket, storeKey, session, sealed });
    const now = this.#clock();
    if (now >= session.expiresAt) return { ok: false, reason: 'expired', session, handle };
    this.#extendLazily(storeKey, session, now);
    return { ok: true, session, handle };
  }

  /**
   * Saves a changed session (renewed tokens and claims; `user`, `subject` and `sid` stay the same)
   * and restarts its idle time-out; a changed e-mail address moves its index entry. False when the
   * session ended meanwhile: it stays ended.
   */
  async update(handle: SessionHandle, session: Session): Promise<boolean> {
    const state = stateOf(handle);
    const now = this.#clock();
    const ttlMs = this.#recordTtl(session, now);
    if (ttlMs <= 0) {
      await this.end(handle);
      return false;
    }
    const sealed = this.#seal(state.ticket, session);
    if (!(await this.#store.replace(state.storeKey, sealed, ttlMs))) return false;
    await this.#reindex(state.storeKey, state.session, session, ttlMs);
    state.session = session;
    state.sealed = sealed;
    setBounded(this.#extendedAt, state.storeKey, now, this.#cacheSize);
    return true;
  }

  /** Ends one session: its record and its index entries. */
  async end(handle: SessionHandle): Promise<void> {
    const { storeKey, session } = stateOf(handle);
    this.#forget(storeKey);
    await this.#store.delete(storeKey);
    await Promise.all(this.#indexKeys(session).map((indexKey) => this.#store.removeFromSet(indexKey, storeKey)));
  }

  /**
   * Ends every session of a user, named by user name or e-mail (in any case) or subject (exactly);
   * returns how many ended.
   */
  endByUser(user: string): Promise<number> {
    return this.#endIndexed(this.#userLookupKeys(user));
  }

  /**
   * The current sessions of a user, named by user name, e-mail or subject. What an operator can be
   * shown: a record is sealed with a key only its cookie holds, so no claim, only id and time-out.
   */
  async listByUser(user: string): Promise<SessionListing[]> {
    const storeKeys = await this.#membersOf(this.#userLookupKeys(user));
    const ttls = await Promise.all(storeKeys.map((storeKey) => this.#store.ttl(storeKey)));
    return storeKeys.flatMap((storeKey, i) => (ttls[i] === null ? [] : [{ id: sessionIdOfStoreKey(storeKey), idleTimeoutInMs: ttls[i]! }]));
  }

  /**
   * Ends the session `id` (as `listByUser` names it); false when there is none. Its index entries
   * are pruned later, like those of a session that timed out.
   */
  async endById(id: string): Promise<boolean> {
    const storeKey = storeKeyOfSession(id);
    this.#forget(storeKey);
    return (await this.#store.take(storeKey)) !== null;
  }

  /** Ends every session of an IdP session (`sid`); returns how many ended. */
  endBySid(sid: string): Promise<number> {
    return this.#endIndexed([this.#sidIndexKey(sid)]);
  }

  /**
   * Runs `fn` (a token refresh) while holding the session's lock across all replicas, if the session
   * is still as `handle` saw it. Returns null without running `fn` when another holder had the lock
   * (once it is released, or after 30 s) or the session changed or ended meanwhile: `resume` again.
   */
  async withRefreshLock<T>(handle: SessionHandle, fn: (lockExpiresAt: number) => Promise<T>): Promise<T | null> {
    const state = stateOf(handle);
    const lockKey = 'lock:' + state.storeKey;
    // On performance.now()'s clock: when the lock may be gone, for `fn` to stay within it.
    const lockExpiresAt = performance.now() + REFRESH_LOCK_TTL_MS;
    const release = await this.#store.tryLock(lockKey, REFRESH_LOCK_TTL_MS);
    if (!release) {
      await this.#waitForRelease(lockKey);
      return null;
    }
    try {
      const current = await this.#store.get(state.storeKey);
      return current?.equals(state.sealed) ? await fn(lockExpiresAt) : null;
    } finally {
      await release().catch(this.#onError);
    }
  }

  /** The ticket of a cookie value, its signature checked once per value (then remembered, bounded). */
  #decodeCookie(cookieValue: string): DecodedCookie | null {
    const known = this.#decodedCookies.get(cookieValue);
    if (known) return known;
    const ticket = this.#codec.decode(cookieValue);
    if (!ticket) return null;
    const decoded = { ticket, storeKey: sessionStoreKey(ticket) };
    setBounded(this.#decodedCookies, cookieValue, decoded, this.#cacheSize);
    return decoded;
  }

  #open(storeKey: string, ticket: Ticket, sealed: Buffer): Session | null {
    const cached = this.#cache.get(storeKey);
    // The store's local copy hands back the same buffer while the record is unchanged.
    if (cached && (cached.sealed === sealed || cached.sealed.equals(sealed)) && (cached.key === ticket.key || cached.key.equals(ticket.key))) return cached.session;
    const plaintext = open(ticket.key, sealed, ticket.id);
    if (!plaintext) return null;
    const session = Object.freeze(JSON.parse(plaintext.toString('utf8')) as Session);
    setBounded(this.#cache, storeKey, { sealed, key: ticket.key, session }, this.#cacheSize);
    return session;
  }

  #extendLazily(storeKey: string, session: Session, now: number): void {
    const last = this.#extendedAt.get(storeKey);
    if (last !== undefined && now - last < this.#extendEveryMs) return;
    setBounded(this.#extendedAt, storeKey, now, this.#cacheSize);
    this.#store.expire(storeKey, this.#recordTtl(session, now)).catch((error: unknown) => {
      this.#extendedAt.delete(storeKey);
      this.#onError(error);
    });
  }

  async #waitForRelease(lockKey: string): Promise<void> {
    for (let poll = 0; poll < MAX_LOCK_POLLS; poll++) {
      await sleep(LOCK_POLL_MS);
      const release = await this.#store.tryLock(lockKey, LOCK_POLL_MS);
      if (release) return release().catch(this.#onError);
    }
  }

  async #addToIndexes(storeKey: string, session: Session, ttlMs: number): Promise<void> {
    await Promise.all(
      this.#indexKeys(session).map(async (indexKey) => {
        await this.#pruneIndex(indexKey);
        await this.#store.addToSet(indexKey, storeKey, ttlMs);
      }),
    );
  }

  /** Moves a session's index entries when the names it is found by changed (a new e-mail address). */
  async #reindex(storeKey: string, before: Session, after: Session, ttlMs: number): Promise<void> {
    const previous = this.#indexKeys(before);
    const current = this.#indexKeys(after);
    await Promise.all([
      ...current.filter((indexKey) => !previous.includes(indexKey)).map((indexKey) => this.#store.addToSet(indexKey, storeKey, ttlMs)),
      ...previous.filter((indexKey) => !current.includes(indexKey)).map((indexKey) => this.#store.removeFromSet(indexKey, storeKey)),
    ]);
  }

  /** Drops index members whose record is gone (idle-expired), so an index never grows without end. */
  async #pruneIndex(indexKey: string): Promise<void> {
    const members = await this.#store.setMembers(indexKey);
    const records = await Promise.all(members.map((storeKey) => this.#store.get(storeKey)));
    const gone = members.filter((_, i) => records[i] === null);
    await Promise.all(gone.map((storeKey) => this.#store.removeFromSet(indexKey, storeKey)));
  }

  async #endIndexed(indexKeys: string[]): Promise<number> {
    const storeKeys = await this.#membersOf(indexKeys);
    storeKeys.forEach((storeKey) => this.#forget(storeKey));
    const records = await Promise.all(storeKeys.map((storeKey) => this.#store.take(storeKey)));
    // Member by member: a session created meanwhile keeps its index entry.
    await Promise.all(indexKeys.flatMap((indexKey) => storeKeys.map((storeKey) => this.#store.removeFromSet(indexKey, storeKey))));
    return records.filter((record) => record !== null).length;
  }

  async #membersOf(indexKeys: string[]): Promise<string[]> {
    const members = await Promise.all(indexKeys.map((indexKey) => this.#store.setMembers(indexKey)));
    return [...new Set(members.flat())];
  }

  /**
   * Every name a session can be found by: user name and e-mail (lower-cased: `Alice.Smith@Contoso.com`
   * is found as typed in any case), the subject (as it is: an opaque id), and the IdP session.
   */
  #indexKeys(session: Session): string[] {
    const email = typeof session.claims.email === 'string' ? [session.claims.email.toLowerCase()] : [];
    const users = new Set([session.user.toLowerCase(), session.subject, ...email]);
    const keys = [...users].map((user) => this.#userIndexKey(user));
    if (session.sid) keys.push(this.#sidIndexKey(session.sid));
    return keys;
  }

  /** Where a name given by an operator or a provider may be indexed: as a subject, and as a user name or e-mail. */
  #userLookupKeys(user: string): string[] {
    const folded = user.toLowerCase();
    return folded === user ? [this.#userIndexKey(user)] : [this.#userIndexKey(user), this.#userIndexKey(folded)];
  }

  #userIndexKey(user: string): string {
    return 'user:' + this.#mac(user);
  }

  #sidIndexKey(sid: string): string {
    return 'sid:' + this.#mac(sid);
  }

  #mac(value: string): string {
    return createHmac('sha256', this.#indexKey).update(value).digest('base64url');
  }

  #seal(ticket: Ticket, session: Session): Buffer {
    return seal(ticket.key, Buffer.from(JSON.stringify(session)), ticket.id);
  }

  #recordTtl(session: Session, now: number): number {
    return Math.min(this.#idleTimeoutMs, session.expiresAt - now);
  }

  #forget(storeKey: string): void {
    this.#cache.delete(storeKey);
    this.#extendedAt.delete(storeKey);
  }
}

function handleOf(state: HandleState): SessionHandle {
  return state as unknown as SessionHandle;
}

function stateOf(handle: SessionHandle): HandleState {
  return handle as unknown as HandleState;
}
