/**
 * Why a machine credential was refused: a stable `code` (the audit record's and the metric's) and the
 * precise `reason` text, for the log and the audit stream only — the client always gets the same
 * generic `invalid_client` answer. The client-certificate wordings are the seed's
 * (`002_9570ba0017425314.txt`); those marked "ours" cover cases the seed does not name.
 */
export interface Refusal {
  code: string;
  reason: string;
}

const CERTIFICATE = 'Certificate token validation failed: ';
const BEARER = 'Bearer token validation failed: ';
const CLIENT = 'Client authentication failed: ';
/** At most this many names are quoted, each cut to this length: they are the client's text. */
const MAX_NAMES = 10;
const MAX_NAME_LENGTH = 64;

const refusal = (code: string, reason: string): Refusal => ({ code, reason });

export const certificateRefusals = {
  unknownClient: refusal('unknown_client', `${CERTIFICATE}Unable to get OAuth2 Application by client id.`),
  audience: refusal('audience', `${CERTIFICATE}Audience validation failed.`),
  issuer: refusal('issuer', `${CERTIFICATE}Issuer validation failed.`),
  signature: refusal('signature', `${CERTIFICATE}Signature validation failed.`),
  notYetValid: refusal('not_yet_valid', `${CERTIFICATE}Lifetime validation failed. Token validity not started yet.`),
  expired: refusal('expired', `${CERTIFICATE}Lifetime validation failed. Token already expired.`),
  tooLong: refusal('lifetime_too_long', `${CERTIFICATE}Lifetime validation failed. Token expiration time exceeds the valid time range of 24 hours.`),
  extraClaims: (names: readonly string[]) => refusal('extra_claims', `${CERTIFICATE}Token contains extra claims: ${quoteNames(names)}`),
  // ours
  malformed: refusal('malformed', `${CERTIFICATE}The token is not a well-formed JWT.`),
  algorithm: (alg: unknown) => refusal('algorithm', `${CERTIFICATE}Signing algorithm ${quoteNames([String(alg)])} is not allowed.`),
  lifetimeClaims: refusal('lifetime_claims', `${CERTIFICATE}Lifetime validation failed. The iat and exp claims must be Unix timestamps.`),
  route: refusal('route', `${CERTIFICATE}The application is not allowed on this path (routes).`),
};

export const bearerRefusals = {
  malformed: refusal('malformed', `${BEARER}The token is not a well-formed JWT.`),
  unknownIssuer: refusal('unknown_issuer', `${BEARER}The token was not issued by the sidecar or the configured identity provider.`),
  unknownClient: refusal('unknown_client', `${BEARER}The application is not registered for client_credentials.`),
  revoked: refusal('revoked', `${BEARER}The token has been revoked.`),
  missingRoles: (roles: readonly string[]) => refusal('missing_roles', `${BEARER}The token lacks required roles: ${quoteNames(roles)}`),
  noClientId: refusal('unknown_client', `${BEARER}The token names no client (client_id, azp or appid).`),
  delegated: refusal('delegated', `${BEARER}The token was issued for a signed-in user (delegated), not to the application itself.`),
  idpUnavailable: refusal('idp_unavailable', `${BEARER}The identity provider's keys could not be loaded.`),
  route: refusal('route', `${BEARER}The application is not allowed on this path (routes).`),
  /** A jose verification error, by its stable code; its message never quotes the token. */
  rejected: (code: string, message: string) => refusal(joseCodes[code] ?? 'invalid_token', `${BEARER}${message}`),
};

/** Client authentication at `/oauth2/token` and `/oauth2/revoke` (client id and secret). */
export const clientRefusals = {
  noCredentials: refusal('no_credentials', `${CLIENT}No client authentication included.`),
  malformed: refusal('malformed', `${CLIENT}The Basic credentials are not well-formed.`),
  unknownClient: refusal('unknown_client', `${CLIENT}Unable to get OAuth2 Application by client id.`),
  grantType: refusal('grant_type', `${CLIENT}The application is not registered for client_credentials.`),
  secret: refusal('secret', `${CLIENT}The client secret does not match.`),
  throttled: refusal('throttled', `${CLIENT}Too many failed attempts from this address; not checked.`),
  busy: refusal('busy', `${CLIENT}Too many client secret checks running and waiting; not checked.`),
};

const joseCodes: Record<string, string> = {
  ERR_JWT_EXPIRED: 'expired',
  ERR_JWS_SIGNATURE_VERIFICATION_FAILED: 'signature',
  ERR_JWT_CLAIM_VALIDATION_FAILED: 'claims',
  ERR_JOSE_ALG_NOT_ALLOWED: 'algorithm',
  ERR_JWKS_NO_MATCHING_KEY: 'signature',
};

function quoteNames(names: readonly string[]): string {
  const shown = names.slice(0, MAX_NAMES).map((name) => (name.length > MAX_NAME_LENGTH ? `${name.slice(0, MAX_NAME_LENGTH)}…` : name));
  return shown.join(', ') + (names.length > MAX_NAMES ? `, … (${names.length} in all)` : '');
}
