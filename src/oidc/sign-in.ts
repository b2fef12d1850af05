import * as client from 'openid-client';
import type { Config } from '../config/schema.js';
import { hasUnverifiedEmail, type Claims, type Session } from '../session/session.js';
import type { Clock } from '../session/store.js';
import { errorSummary, type OidcProvider, type TokenSet } from './provider.js';
import { bindingHash, isBoundTo, type LoginTransactions } from './transactions.js';

/** Why a sign-in failed: a stable code to branch on, the status to answer, and the precise reason. */
export interface SignInFailure {
  ok: false;
  code: 'provider_error' | 'access_denied' | 'unknown_state' | 'foreign_state' | 'exchange_failed' | 'not_allowed';
  status: 400 | 403;
  /** Precise reason for the audit log (and the page when `errors.detailed` is on). */
  reason: string;
  /** Where the user wanted to go, when known (to offer "try again"). */
  returnTo?: string;
  /** Who tried, when the provider told (a user the authorization rules refused). */
  user?: string;
}

/**
 * The callback of a browser whose binding cookie changed since it started (tabs that all started
 * before the first binding cookie was set: only the last one's stays): not a failure — the sign-in
 * starts again with the binding the browser has, once.
 */
export interface SignInRestart {
  ok: false;
  restart: true;
  returnTo: string;
}

/** A refresh found the user no longer allowed: the message is the rule that refuses them. */
export class AccessWithdrawnError extends Error {}

export type SignInOutcome = { ok: true; session: Session; returnTo: string } | SignInFailure | SignInRestart;

const USER_CLAIMS = ['preferred_username', 'upn', 'email', 'sub'];

/**
 * The authorization code flow of browser users: `begin` makes a login transaction and gives the
 * provider URL; `complete` opens the transaction the callback's `state` carries, checks it belongs
 * to this browser, exchanges the code, marks the state used and builds the session. `refresh`
 * renews a session's tokens.
 */
export class BrowserSignIn {
  readonly #maxLifetimeMs: number;
  readonly #allowedGroups: Set<string>;
  readonly #allowedDomains: string[];
  readonly #allowedTenants: Set<string>;

  constructor(
    private readonly config: Config,
    private readonly provider: OidcProvider,
    private readonly transactions: LoginTransactions,
    private readonly clock: Clock,
  ) {
    this.#maxLifetimeMs = config.session.maxLifetimeHours * 3600_000;
    this.#allowedGroups = new Set(config.authorization.allowedGroups);
    this.#allowedDomains = config.authorization.allowedEmailDomains.map((domain) => '@' + domain.toLowerCase());
    this.#allowedTenants = new Set(config.provider.azure.allowedTenants.map((tenant) => tenant.toLowerCase()));
  }

  /** Starts a sign-in that returns to `returnTo`; `bindingValue` is this browser's binding cookie. */
  begin(returnTo: string, bindingValue: string, restarted = false): Promise<URL> {
    const transaction = this.transactions.begin({ returnTo, bindingHash: bindingHash(bindingValue), restarted });
    return this.provider.authorizationUrl(transaction);
  }

  /** Finishes a sign-in from the callback's query string; never creates a session on failure. */
  async complete(rawQuery: string, bindingValue: string | undefined): Promise<SignInOutcome> {
    const query = new URLSearchParams(rawQuery);
    const transaction = this.transactions.open(query.get('state') ?? '');
    const providerError = query.get('error');
    if (providerError) return providerFailure(providerError, query.get('error_description'), transaction?.returnTo);
    if (!transaction) return failure('unknown_state', 400, 'the state is unknown or expired');
    if (!isBoundTo(transaction, bindingValue)) {
      // With a binding of its own, the browser signs in again with it: its code is not used, so a
      // login CSRF (another browser's callback) signs no one in as someone else. Once only: no loop.
      if (bindingValue !== undefined && !transaction.restarted) return { ok: false, restart: true, returnTo: transaction.returnTo };
      return failure('foreign_state', 400, 'the state was issued to another browser', transaction.returnTo);
    }
    const giveBack = await this.transactions.claim(transaction);
    if (!giveBack) return failure('unknown_state', 400, 'the state was already used, or its callback is being handled', transaction.returnTo);
    let tokens: TokenSet;
    try {
      tokens = await this.provider.exchangeCode(rawQuery, transaction);
    } catch (error) {
      await giveBack();
      return failure('exchange_failed', 400, `the code exchange failed: ${exchangeErrorText(error)}`, transaction.returnTo);
    }
    const denial = this.#authorizationDenial(tokens.claims);
    if (denial) return { ...failure('not_allowed', 403, denial, transaction.returnTo), user: userName(tokens.claims) };
    return { ok: true, session: this.#newSession(tokens), returnTo: transaction.returnTo };
  }

  /**
   * Renews the session's tokens with its refresh token; throws when the provider refuses, and
   * `AccessWithdrawnError` when the renewed claims no longer pass the authorization rules (a user
   * taken out of an allowed group keeps no access past the next refresh).
   */
  async refresh(session: Session): Promise<Session> {
    const tokens = await this.provider.refresh(session.refreshToken!, session.claims);
    const denial = this.#authorizationDenial(tokens.claims);
    if (denial) throw new AccessWithdrawnError(denial);
    // A provider may renew without a new ID token: the one in hand stays (sign-out's id_token_hint, identity.passIdToken).
    return { ...session, ...tokenFields(tokens), idToken: tokens.idToken ?? session.idToken, claims: tokens.claims };
  }

  #newSession(tokens: TokenSet): Session {
    const now = this.clock();
    const { claims } = tokens;
    const subject = String((this.config.provider.type === 'azure' && claims.oid) || claims.sub);
    return {
      subject,
      user: userName(claims),
      claims,
      ...tokenFields(tokens),
      sid: typeof claims.sid === 'string' ? claims.sid : undefined,
      createdAt: now,
      expiresAt: now + this.#maxLifetimeMs,
    };
  }

  /** Why this user may not use the portal, or null when the authorization rules let them in. */
  #authorizationDenial(claims: Claims): string | null {
    if (this.#allowedTenants.size > 0) {
      const tenant = typeof claims.tid === 'string' ? claims.tid.toLowerCase() : '';
      if (!this.#allowedTenants.has(tenant)) return "the user's tenant (tid) is not in provider.azure.allowedTenants";
    }
    if (this.#allowedGroups.size > 0) {
      const groups = Array.isArray(claims.groups) ? claims.groups : [];
      if (!groups.some((group) => this.#allowedGroups.has(String(group)))) return 'the user is in none of authorization.allowedGroups';
    }
    if (this.#allowedDomains.length > 0) {
      if (hasUnverifiedEmail(claims)) return "the user's e-mail address is not verified (email_verified false): authorization.allowedEmailDomains cannot rely on it";
      const email = typeof claims.email === 'string' ? claims.email.toLowerCase() : '';
      if (!this.#allowedDomains.some((domain) => email.endsWith(domain))) return "the user's e-mail domain is not in authorization.allowedEmailDomains";
    }
    return null;
  }
}

function tokenFields(tokens: TokenSet): Pick<Session, 'idToken' | 'accessToken' | 'refreshToken' | 'tokenExpiresAt'> {
  return { idToken: tokens.idToken, accessToken: tokens.accessToken, refreshToken: tokens.refreshToken, tokenExpiresAt: tokens.expiresAt };
}

/** The name logs and the audit log show: the X-Forwarded-User rule of DESIGN.md §4 (an unverified e-mail is none). */
function userName(claims: Claims): string {
  for (const claim of USER_CLAIMS) {
    if (claim === 'email' && hasUnverifiedEmail(claims)) continue;
    const value = claims[claim];
    if (typeof value === 'string' && value !== '') return value;
  }
  return 'unknown';
}

function failure(code: SignInFailure['code'], status: 400 | 403, reason: string, returnTo?: string): SignInFailure {
  return { ok: false, code, status, reason, returnTo };
}

function providerFailure(error: string, description: string | null, returnTo: string | undefined): SignInFailure {
  const reason = `the identity provider answered ${error.slice(0, 100)}${description ? `: ${description.slice(0, 300)}` : ''}`;
  return error === 'access_denied' ? failure('access_denied', 403, reason, returnTo) : failure('provider_error', 400, reason, returnTo);
}

/** The provider's OAuth error code and description when it sent one, else the library's message. */
function exchangeErrorText(error: unknown): string {
  if (error instanceof client.ResponseBodyError) return `${error.error}${error.error_description ? ` (${error.error_description})` : ''}`;
  return errorSummary(error).message;
}
