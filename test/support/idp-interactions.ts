import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Interaction, Provider } from 'oidc-provider';
import { escapeHtml, htmlPage } from './html.js';
import type { TestUser } from './idp.js';

/**
 * The test IdP's own interaction pages, served in front of `provider.callback()`:
 * `GET /interaction/:uid` shows the login form, `POST /interaction/:uid` signs in or cancels. The
 * consent prompt is granted without a page, so a user clicks only once.
 */

const INTERACTION_PATH = /^\/interaction\/[\w-]+$/;
const MAX_FORM_BYTES = 16 * 1024;
const CANCELLED = { error: 'access_denied', error_description: 'The user cancelled the sign-in' };
const WRONG_CREDENTIALS = 'Wrong username or password.';

export function createIdpRequestHandler(provider: Provider, users: readonly TestUser[]): RequestListener {
  const providerCallback = provider.callback();
  return (req, res) => {
    const { pathname } = new URL(req.url ?? '/', 'http://idp.invalid');
    if (!INTERACTION_PATH.test(pathname)) return providerCallback(req, res);
    handleInteraction(provider, users, req, res).catch((error: unknown) => sendInteractionError(res, error));
  };
}

async function handleInteraction(provider: Provider, users: readonly TestUser[], req: IncomingMessage, res: ServerResponse): Promise<void> {
  const interaction = await provider.interactionDetails(req, res);
  if (interaction.prompt.name !== 'login') {
    const grantId = await grantRequestedConsent(provider, interaction);
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  if (req.method === 'GET') return sendHtml(res, 200, loginPage(interaction.uid));
  if (req.method !== 'POST') return sendHtml(res, 405, htmlPage('Method not allowed', '<h1>Method not allowed</h1>'));
  const form = await readForm(req);
  if (form.get('action') === 'cancel') {
    return provider.interactionFinished(req, res, CANCELLED, { mergeWithLastSubmission: false });
  }
  const username = form.get('login') ?? '';
  const user = authenticate(users, username, form.get('password') ?? '');
  if (!user) return sendHtml(res, 200, loginPage(interaction.uid, username, WRONG_CREDENTIALS));
  return provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
}

/** Grants exactly what the consent prompt found missing (scopes, claims, resource scopes). */
async function grantRequestedConsent(provider: Provider, interaction: Interaction): Promise<string> {
  const { details } = interaction.prompt;
  const grant = (interaction.grantId && (await provider.Grant.find(interaction.grantId))) || newGrant(provider, interaction);
  const scopes = details.missingOIDCScope as string[] | undefined;
  const claims = details.missingOIDCClaims as string[] | undefined;
  const resourceScopes = details.missingResourceScopes as Record<string, string[]> | undefined;
  if (scopes) grant.addOIDCScope(scopes.join(' '));
  if (claims) grant.addOIDCClaims(claims);
  for (const [resource, scope] of Object.entries(resourceScopes ?? {})) grant.addResourceScope(resource, scope.join(' '));
  return grant.save();
}

function newGrant(provider: Provider, interaction: Interaction) {
  if (!interaction.session) throw new Error('consent prompt without a signed-in session');
  return new provider.Grant({ accountId: interaction.session.accountId, clientId: String(interaction.params.client_id) });
}

/** The user with this username and password, compared in constant time. */
function authenticate(users: readonly TestUser[], username: string, password: string): TestUser | undefined {
  const user = users.find((candidate) => candidate.username === username);
  const matches = timingSafeEqual(sha256(password), sha256(user?.password ?? ''));
  return matches ? user : undefined;
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function loginPage(uid: string, username = '', error?: string): string {
  const alert = error ? `<p role="alert">${escapeHtml(error)}</p>` : '';
  return htmlPage(
    'Sign in',
    `<main>
<h1>Sign in to the test identity provider</h1>
${alert}
<form method="post" action="/interaction/${escapeHtml(uid)}">
<p><label for="login">Username</label> <input id="login" name="login" autocomplete="username" required autofocus value="${escapeHtml(username)}"></p>
<p><label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit" name="action" value="login">Sign in</button> <button type="submit" name="action" value="cancel" formnovalidate>Cancel</button></p>
</form>
</main>`,
  );
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    length += chunk.length;
    if (length > MAX_FORM_BYTES) throw Object.assign(new Error('form too large'), { status: 413 });
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(html), 'cache-control': 'no-store' });
  res.end(html);
}

/** Expired or unknown interactions (oidc-provider's SessionNotFound, status 400) and anything else. */
function sendInteractionError(res: ServerResponse, error: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const status = (error as { status?: number }).status ?? 500;
  const message = error instanceof Error ? error.message : String(error);
  sendHtml(res, status, htmlPage('Sign-in error', `<h1>Sign-in error</h1><p>${escapeHtml(message)}</p>`));
}
