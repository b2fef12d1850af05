/** Machine clients: OAuth 2 applications, the tokens the sidecar issues them, their credentials' checks (DESIGN.md §5). */
export { MachineClients, type MachineClientsOptions } from './machine-clients.js';
export type { MachineAuthOutcome, MachineIdentity, MachineAuthMethod, CredentialFailure } from './authenticator.js';
export { CERTIFICATE_TOKEN_HEADER, CERTIFICATE_TOKEN_AUDIENCE } from './certificate-token.js';
export { INVALID_CLIENT_DESCRIPTION, type ClientRequest, type OAuthAnswer } from './token-endpoint.js';
export type { Refusal } from './reasons.js';
export { hashSecret, verifySecret } from './secret-hash.js';
export { ApplicationRegistry, ApplicationsError } from './registry.js';
export { TokenIssuer } from './token-issuer.js';
export { readSecretLine, type SecretInput } from './secret-input.js';
