/** The claims kept for a signed-in user: those the identity headers and authorization rules read. */
export type Claims = Record<string, unknown>;

/**
 * The provider says the `email` claim is not verified: `email_verified` false (some providers send
 * it as a string), or Azure AD's `xms_edov` false. Such an address may be anyone's: it neither passes
 * `authorization.allowedEmailDomains` nor reaches the portal as an identity.
 */
export function hasUnverifiedEmail(claims: Claims): boolean {
  return claims.email_verified === false || claims.email_verified === 'false' || claims.xms_edov === false;
}

/** A signed-in browser user's session, as kept (encrypted) in the store. */
export interface Session {
  /** The IdP subject (`sub`, or Azure's `oid`). */
  subject: string;
  /** The user name shown in logs and the audit log (the X-Forwarded-User value). */
  user: string;
  /** ID token claims other than the protocol ones (iss, aud, exp, iat, nonce, at_hash, …). */
  claims: Claims;
  idToken?: string;
  accessToken?: string;
  refreshToken?: string;
  /** When the access token expires (ms since epoch); absent when the provider did not say. */
  tokenExpiresAt?: number;
  /** The IdP session id (`sid`), for back-channel and front-channel logout. */
  sid?: string;
  /** When the session was created (ms since epoch). */
  createdAt: number;
  /** Absolute end of the session (ms since epoch), whatever the activity. */
  expiresAt: number;
}
