import type { Claims } from '../session/session.js';

/** The claims Azure AD puts in place of `groups` for a user in more groups than fit in a token. */
const OVERAGE_CLAIMS = ['_claim_names', '_claim_sources', 'hasgroups'];
const GRAPH_TIMEOUT_MS = 10_000;
/** getMemberObjects answers at most this many ids; more would be a broken or hostile answer. */
const MAX_GROUPS = 11_000;
const MAX_GROUP_ID_LENGTH = 256;

/**
 * True when Azure AD left the user's groups out of the ID token (the "group overage": more than
 * 200 groups in a JWT), naming a source instead (`_claim_names.groups`, or `hasgroups`).
 */
export function hasGroupOverage(claims: Claims): boolean {
  if (Array.isArray(claims.groups)) return false;
  const names = claims._claim_names;
  return (typeof names === 'object' && names !== null && 'groups' in names) || claims.hasgroups === true;
}

/** `claims` without the overage markers: they name an endpoint, and are no claim about the user. */
export function withoutOverageClaims(claims: Claims): Claims {
  const rest: Claims = {};
  for (const name in claims) if (!OVERAGE_CLAIMS.includes(name)) rest[name] = claims[name];
  return rest;
}

/**
 * The ids of the security groups the user belongs to, directly or not — what the `groups` claim
 * would have held — from Microsoft Graph's `POST /me/getMemberObjects`, with the user's access
 * token (it needs a Graph permission such as GroupMember.Read.All). Throws with the reason.
 */
export async function readGroupsFromGraph(fetchGraph: (url: string, init: RequestInit) => Promise<Response>, graphUrl: string, accessToken: string | undefined): Promise<string[]> {
  if (!accessToken) throw new Error('the provider gave no access token to ask Microsoft Graph with');
  const url = `${graphUrl.replace(/\/$/, '')}/v1.0/me/getMemberObjects`;
  const response = await fetchGraph(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ securityEnabledOnly: true }),
    redirect: 'error',
    signal: AbortSignal.timeout(GRAPH_TIMEOUT_MS),
  });
  if (!response.ok) throw new Error(`Microsoft Graph answered ${response.status} to getMemberObjects`);
  const body = (await response.json()) as { value?: unknown };
  const ids = body.value;
  if (!Array.isArray(ids) || ids.length > MAX_GROUPS || !ids.every((id) => typeof id === 'string' && id.length > 0 && id.length <= MAX_GROUP_ID_LENGTH)) {
    throw new Error('Microsoft Graph answered getMemberObjects without a list of group ids');
  }
  return ids as string[];
}
