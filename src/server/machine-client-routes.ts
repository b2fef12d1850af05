import type { IncomingMessage, ServerResponse } from 'node:http';
import { CERTIFICATE_TOKEN_HEADER, INVALID_CLIENT_DESCRIPTION, type ClientRequest, type MachineIdentity, type OAuthAnswer } from '../clients/index.js';
import { AUTH_METHOD_HEADER, CLIENT_ID_HEADER, encodeHeaderValue } from '../proxy/identity-headers.js';
import { BodyError, readFormBody } from './body.js';
import { sendJson } from './responses.js';
import { requestAuditFields, type Services } from './services.js';

const MAX_CLIENT_BODY_BYTES = 16 * 1024;

export type MachineClientCheck =
  | { status: 'absent' | 'refused' }
  /** `headers`: the client's identity headers for the portal, which must not get its credential (MACHINE_CREDENTIAL_HEADERS). */
  | { status: 'authenticated'; clientId: string; headers: Readonly<Record<string, string>> };

/** The headers a machine credential comes in: the portal never gets them. */
export const MACHINE_CREDENTIAL_HEADERS: readonly string[] = ['authorization', CERTIFICATE_TOKEN_HEADER];

/**
 * Pipeline step 4 (DESIGN.md §1): the request's machine credential. When it is valid, the request
 * goes to the portal with the client's identity headers instead of the credential.
 * `refused`: every credential it carried failed; each precise reason is audited, and the caller
 * answers with `sendInvalidClient` — the same answer for every cause.
 */
export async function authenticateMachineClient(services: Services, req: IncomingMessage, path: string): Promise<MachineClientCheck> {
  const outcome = await services.machineClients.authenticate(req.headers, path);
  if (outcome.status === 'absent') return outcome;
  if (outcome.status === 'refused') {
    const auditFields = requestAuditFields(services, req);
    for (const { method, clientId, refusal } of outcome.failures) {
      services.audit.record({ event: 'api_auth_failed', clientId, method, ...refusal, ...auditFields });
      // With the audit log off, the reason is still there for troubleshooting — at debug, since anyone can send a credential.
      if (!services.config.audit.enabled) services.logger.debug({ clientId, method, reason: refusal.reason, requestId: auditFields.requestId }, 'machine client refused');
    }
    return { status: 'refused' };
  }
  const { identity } = outcome;
  // One audit event per verification, not per request: a verified credential is cached.
  if (outcome.firstUse) services.audit.record({ event: 'api_auth', clientId: identity.clientId, method: identity.method, reason: 'credential verified', ...requestAuditFields(services, req) });
  return { status: 'authenticated', clientId: identity.clientId, headers: identityHeaders(services, identity) };
}

/** The one answer to every refused machine credential (the seed's generic message). */
export function sendInvalidClient(res: ServerResponse, realm: string): void {
  sendJson(res, 401, { error: 'invalid_client', error_description: INVALID_CLIENT_DESCRIPTION }, { 'www-authenticate': `Bearer realm="${realm}"` });
}

/** `POST /oauth2/token`: the client credentials grant. */
export function tokenEndpoint(services: Services, req: IncomingMessage, res: ServerResponse): Promise<void> {
  return answerClientRequest(services, req, res, (request) => services.machineClients.token(request));
}

/** `POST /oauth2/revoke` (RFC 7009). */
export function revocationEndpoint(services: Services, req: IncomingMessage, res: ServerResponse): Promise<void> {
  return answerClientRequest(services, req, res, (request) => services.machineClients.revoke(request));
}

/** `GET /oauth2/jwks`: the public keys of the tokens the sidecar issues. */
export async function jwksEndpoint(services: Services, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  sendJson(res, 200, services.machineClients.jwks());
}

async function answerClientRequest(services: Services, req: IncomingMessage, res: ServerResponse, handle: (request: ClientRequest) => Promise<OAuthAnswer>): Promise<void> {
  let form: URLSearchParams;
  try {
    form = await readFormBody(req, MAX_CLIENT_BODY_BYTES);
  } catch (error) {
    if (!(error instanceof BodyError)) throw error;
    return sendJson(res, error.status, { error: 'invalid_request', error_description: `The request body is not acceptable: ${error.message}.` });
  }
  const answer = await handle({ authorization: req.headers.authorization, form, address: services.clientAddresses.of(req) });
  if (answer.audit) services.audit.record({ ...answer.audit, method: 'client-credentials', ...requestAuditFields(services, req) });
  sendJson(res, answer.status, answer.body, answer.headers);
}

const headersByIdentity = new WeakMap<MachineIdentity, Record<string, string>>();

/** `X-Forwarded-Client-Id`, `X-Auth-Method` and the roles header; built once per verified credential. */
function identityHeaders(services: Services, identity: MachineIdentity): Record<string, string> {
  let headers = headersByIdentity.get(identity);
  if (!headers) {
    headers = {
      ...services.identity.fromClaims({ roles: [...identity.roles] }),
      [CLIENT_ID_HEADER]: encodeHeaderValue(identity.clientId),
      [AUTH_METHOD_HEADER]: identity.method,
    };
    headersByIdentity.set(identity, headers);
  }
  return headers;
}
