import { sha256Base64url } from '../session/crypto.js';
import type { Clock, KeyValueStore } from '../session/store.js';

const KEY_PREFIX = 'revoked-token:';
const MARK = Buffer.from('1');

/**
 * Revoked access tokens of the sidecar, by `jti`, in the shared store so that every replica sees
 * them. An entry lives as long as its token would have: past `exp` the token is refused anyway.
 */
export class RevocationList {
  constructor(
    private readonly store: KeyValueStore,
    private readonly clock: Clock,
  ) {}

  async revoke(jti: string, expiresAtSeconds: number): Promise<void> {
    const remainingMs = expiresAtSeconds * 1000 - this.clock();
    if (remainingMs > 0) await this.store.set(keyOf(jti), MARK, remainingMs);
  }

  async isRevoked(jti: string): Promise<boolean> {
    return (await this.store.get(keyOf(jti))) !== null;
  }
}

/** Store keys never hold raw identifiers. */
function keyOf(jti: string): string {
  return KEY_PREFIX + sha256Base64url(jti);
}
