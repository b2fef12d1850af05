/**
 * The part of oidc-provider 9's API the test identity provider uses. The package ships no type
 * declarations and @types/oidc-provider is not a dependency; extend this as tests need more.
 */
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export interface KoaContextWithOIDC {
    body: unknown;
    type: string;
    status: number;
    host: string;
    oidc: { client?: { clientId: string } };
  }

  export interface ClaimsSource {
    scopes: Set<string>;
  }

  export interface Client {
    clientId: string;
    grantTypeAllowed(grantType: string): boolean;
    /** Sends this client a back-channel logout token for `sub` (with `sid` when the client requires one and it is given). */
    backchannelLogout(sub: string, sid?: string): Promise<void>;
  }

  export interface Account {
    accountId: string;
    claims(use: string, scope: string): Promise<Record<string, unknown>> | Record<string, unknown>;
  }

  export interface Interaction {
    uid: string;
    prompt: { name: string; reasons: string[]; details: Record<string, unknown> };
    params: Record<string, unknown>;
    session?: { accountId: string; uid: string };
    grantId?: string;
  }

  export interface Grant {
    addOIDCScope(scope: string): void;
    addOIDCClaims(claims: string[]): void;
    addResourceScope(resource: string, scope: string): void;
    save(): Promise<string>;
  }

  export interface GrantModel {
    new (properties: { accountId: string; clientId: string }): Grant;
    find(id: string): Promise<Grant | undefined>;
  }

  export interface ClientModel {
    prototype: { includeSid(): boolean };
    find(id: string): Promise<Client | undefined>;
  }

  export type InteractionResult =
    | { login: { accountId: string } }
    | { consent: { grantId: string } }
    | { error: string; error_description?: string };

  export type Configuration = Record<string, unknown>;

  export class Provider {
    constructor(issuer: string, configuration?: Configuration);
    readonly issuer: string;
    readonly Grant: GrantModel;
    readonly Client: ClientModel;
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<Interaction>;
    interactionFinished(
      req: IncomingMessage,
      res: ServerResponse,
      result: InteractionResult,
      options?: { mergeWithLastSubmission?: boolean },
    ): Promise<void>;
    on(event: string, listener: (...args: unknown[]) => void): this;
  }

  export const errors: {
    /** RFC 8707 `invalid_target`: a resource indicator the provider does not know. */
    InvalidTarget: new (description?: string) => Error;
  };

  export default Provider;
}
