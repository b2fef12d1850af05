import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { deriveKey, sha256Base64url } from './crypto.js';

/**
 * The session cookie's content: an opaque ticket naming a store record (`id`) and holding the key
 * the record is encrypted with (`key`), signed so that no one but the sidecar can make one.
 *
 * Encoding: `v1.<base64url(id ‖ key)>.<base64url(HMAC-SHA256(mac key, "v1.<payload>"))>`.
 */
export interface Ticket {
  /** 16 random bytes naming the session; stored only hashed. */
  readonly id: Buffer;
  /** 32 random bytes: the AES-256-GCM key of the session record. */
  readonly key: Buffer;
}

const ID_BYTES = 16;
const KEY_BYTES = 32;
const PREFIX = 'v1.';
/** `v1.` + 48 bytes in base64url (64 characters, no padding). */
const SIGNED_LENGTH = PREFIX.length + 64;
/** The signed part, `.`, and a 32-byte HMAC in base64url (43 characters). */
const ENCODED_LENGTH = SIGNED_LENGTH + 1 + 43;

/** Issues, encodes and verifies session tickets; the HMAC key is derived from `session.secret` once. */
export class TicketCodec {
  readonly #macKey: Buffer;

  constructor(secret: string) {
    this.#macKey = deriveKey(secret, 'session-ticket');
  }

  /** A new ticket with a random id and key. */
  issue(): Ticket {
    const bytes = randomBytes(ID_BYTES + KEY_BYTES);
    return { id: bytes.subarray(0, ID_BYTES), key: bytes.subarray(ID_BYTES) };
  }

  /** The cookie value for `ticket`. */
  encode(ticket: Ticket): string {
    const signed = PREFIX + Buffer.concat([ticket.id, ticket.key]).toString('base64url');
    return `${signed}.${this.#sign(signed)}`;
  }

  /** The ticket in a cookie value, or null for anything not made by `encode` with this secret. */
  decode(text: string): Ticket | null {
    if (text.length !== ENCODED_LENGTH || !text.startsWith(PREFIX) || text[SIGNED_LENGTH] !== '.') return null;
    const signed = text.slice(0, SIGNED_LENGTH);
    // Comparing the signature as text also refuses non-canonical base64url spellings of it.
    const expected = Buffer.from(this.#sign(signed));
    const given = Buffer.from(text.slice(SIGNED_LENGTH + 1));
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    const bytes = Buffer.from(signed.slice(PREFIX.length), 'base64url');
    return { id: bytes.subarray(0, ID_BYTES), key: bytes.subarray(ID_BYTES) };
  }

  #sign(signed: string): string {
    return createHmac('sha256', this.#macKey).update(signed).digest('base64url');
  }
}

const SESSION_KEY_PREFIX = 'session:';
/** A session's id as operators see it (`oidc-sidecar sessions`): base64url(SHA-256(ticket id)). */
export const SESSION_ID = /^[A-Za-z0-9_-]{43}$/;

/** The store key of a ticket's session record: `session:` + its session id, never the raw ticket id. */
export function sessionStoreKey(ticket: Ticket): string {
  return storeKeyOfSession(sha256Base64url(ticket.id));
}

export function storeKeyOfSession(sessionId: string): string {
  return SESSION_KEY_PREFIX + sessionId;
}

export function sessionIdOfStoreKey(storeKey: string): string {
  return storeKey.slice(SESSION_KEY_PREFIX.length);
}
