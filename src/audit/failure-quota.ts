import type { Clock } from '../session/store.js';
import type { AuditEvent } from './events.js';

/** How many failures of one kind (event, code and method) are written one by one in a window. */
const FAILURES_WRITTEN_PER_WINDOW = 20;
const FAILURE_WINDOW_MS = 60_000;
/** Distinct client addresses counted in one summary; more are reported as "at least". */
const MAX_ADDRESSES_COUNTED = 1000;
/** Distinct client ids and user names a summary names; more are reported as "and more". */
const MAX_NAMES_LISTED = 10;

/** The failures of one kind held back in the current window. */
interface HeldBack {
  event: AuditEvent;
  count: number;
  addresses: Set<string>;
  /** The client ids and user names they named: a flood of junk cannot hide who was tried. */
  clientIds: Set<string>;
  users: Set<string>;
}

/**
 * Keeps floods out of the audit log. Anyone can cause some failures at will — a junk bearer token,
 * a made-up `state` at the callback, a forged logout token — and each would be a line on stdout and
 * an entry in the capped Redis stream: a flood would rotate every earlier event out of the stream.
 * So in each minute the first FAILURES_WRITTEN_PER_WINDOW failures of a kind (event, code, method) are
 * written as they come, and the rest of that kind are counted into one summary event written when
 * the minute ends: how many, from how many addresses, and the first one's fields. Everything else
 * is always written; `auth_events_total` counts every event, held back or not.
 */
export class FailureQuota {
  readonly #written = new Map<string, number>();
  readonly #heldBack = new Map<string, HeldBack>();
  readonly #timer: NodeJS.Timeout;
  #windowEnds: number;

  constructor(
    private readonly clock: Clock,
    private readonly writeSummary: (summary: AuditEvent) => void,
  ) {
    this.#windowEnds = clock() + FAILURE_WINDOW_MS;
    this.#timer = setInterval(() => this.#rollOver(), FAILURE_WINDOW_MS).unref();
  }

  /** True when `event` is to be written now; false when it is counted into its kind's summary. */
  admit(event: AuditEvent): boolean {
    if (!anyoneCanCause(event)) return true;
    this.#rollOver();
    const kind = `${event.event} ${event.code ?? ''} ${event.method ?? ''}`;
    const written = this.#written.get(kind) ?? 0;
    if (written < FAILURES_WRITTEN_PER_WINDOW) {
      this.#written.set(kind, written + 1);
      return true;
    }
    let heldBack = this.#heldBack.get(kind);
    if (!heldBack) this.#heldBack.set(kind, (heldBack = { event, count: 0, addresses: new Set(), clientIds: new Set(), users: new Set() }));
    heldBack.count++;
    addBounded(heldBack.addresses, event.ip, MAX_ADDRESSES_COUNTED);
    addBounded(heldBack.clientIds, event.clientId, MAX_NAMES_LISTED + 1);
    addBounded(heldBack.users, event.user, MAX_NAMES_LISTED + 1);
    return false;
  }

  close(): void {
    clearInterval(this.#timer);
    this.#flush();
  }

  #rollOver(): void {
    const now = this.clock();
    if (now < this.#windowEnds) return;
    this.#flush();
    this.#windowEnds = now + FAILURE_WINDOW_MS;
  }

  #flush(): void {
    for (const heldBack of this.#heldBack.values()) this.writeSummary(summaryOf(heldBack));
    this.#heldBack.clear();
    this.#written.clear();
  }
}

/** Failures an unauthenticated client can cause: refused sign-in callbacks, credentials and logout tokens. */
function anyoneCanCause(event: AuditEvent): boolean {
  return event.event === 'login_failed' || event.event === 'api_auth_failed' || (event.event === 'backchannel_logout' && event.code === 'refused');
}

function summaryOf({ event, count, addresses, clientIds, users }: HeldBack): AuditEvent {
  const from = fromWhere(addresses);
  const seconds = FAILURE_WINDOW_MS / 1000;
  const named = [listed('client ids', clientIds), listed('users', users)].filter(Boolean).join('; ');
  return {
    event: event.event,
    code: event.code,
    method: event.method,
    ip: addresses.size === 1 ? [...addresses][0] : undefined,
    clientId: clientIds.size === 1 ? [...clientIds][0] : undefined,
    user: users.size === 1 ? [...users][0] : undefined,
    reason:
      `${count} more like this from ${from} within ${seconds} s, past the ${FAILURES_WRITTEN_PER_WINDOW} written one by one` +
      `${named ? `; ${named}` : ''}; the first held back: ${event.reason ?? 'no reason given'}`,
  };
}

function addBounded(values: Set<string>, value: string | undefined, max: number): void {
  if (value !== undefined && values.size < max) values.add(value);
}

/** "client ids a, b and more", for two or more names (a single one has its own field). */
function listed(what: string, names: Set<string>): string {
  if (names.size < 2) return '';
  const shown = [...names].slice(0, MAX_NAMES_LISTED);
  return `${what} ${shown.join(', ')}${names.size > MAX_NAMES_LISTED ? ' and more' : ''}`;
}

function fromWhere(addresses: Set<string>): string {
  if (addresses.size === 0) return 'an unknown address';
  if (addresses.size === 1) return [...addresses][0]!;
  return addresses.size >= MAX_ADDRESSES_COUNTED ? `at least ${MAX_ADDRESSES_COUNTED} addresses` : `${addresses.size} addresses`;
}
