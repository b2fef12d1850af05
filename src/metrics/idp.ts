/** The `endpoint` label of `idp_request_duration_seconds`: a fixed set, never a URL. */
export type IdpEndpoint = 'discovery' | 'token' | 'jwks' | 'revocation' | 'userinfo' | 'introspection' | 'graph' | 'other';

/** The provider metadata fields that name an endpoint the sidecar calls. */
const METADATA_ENDPOINTS: ReadonlyArray<[string, IdpEndpoint]> = [
  ['token_endpoint', 'token'],
  ['jwks_uri', 'jwks'],
  ['revocation_endpoint', 'revocation'],
  ['userinfo_endpoint', 'userinfo'],
  ['introspection_endpoint', 'introspection'],
];

const WELL_KNOWN = /\/\.well-known\/(openid-configuration|oauth-authorization-server)$/;

/** Which provider endpoint `url` is, by its metadata (once loaded); `other` when none matches. */
export function idpEndpointOf(url: string, metadata: object | undefined): IdpEndpoint {
  const target = url.split('?')[0]!;
  if (WELL_KNOWN.test(target)) return 'discovery';
  const fields = (metadata ?? {}) as Record<string, unknown>;
  for (const [field, endpoint] of METADATA_ENDPOINTS) {
    if (fields[field] === target) return endpoint;
  }
  return 'other';
}

/**
 * A `fetch` for openid-client's and jose's `customFetch` hook: the same request, timed. `observe`
 * gets the endpoint and the seconds until the response headers (or the failure).
 */
export function timedFetch(
  endpointOf: (url: string) => IdpEndpoint,
  observe: (endpoint: IdpEndpoint, seconds: number) => void,
): (url: string, options: RequestInit) => Promise<Response> {
  return async (url, options) => {
    const started = performance.now();
    try {
      return await fetch(url, options);
    } finally {
      observe(endpointOf(url), (performance.now() - started) / 1000);
    }
  };
}
