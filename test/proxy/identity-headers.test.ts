import t from 'tap';
import { DEFAULT_IDENTITY_HEADERS } from '../../src/config/schema.js';
import { encodeHeaderValue, IdentityHeaders, identityHeaderMap } from '../../src/proxy/identity-headers.js';

const identity = new IdentityHeaders(DEFAULT_IDENTITY_HEADERS);

t.test('claims become the identity headers of DESIGN.md §4', async (t) => {
  const headers = identity.fromClaims({
    sub: 'subject-1',
    preferred_username: 'alice',
    email: 'alice@example.com',
    name: 'Alice Zoë',
    groups: ['portal-users', 'admins'],
    roles: ['Portal.Admin'],
  });
  t.same(headers, {
    'x-forwarded-user': 'alice',
    'x-forwarded-email': 'alice@example.com',
    'x-forwarded-name': 'Alice Zo%C3%AB',
    'x-forwarded-groups': 'portal-users,admins',
    'x-forwarded-roles': 'Portal.Admin',
    'x-forwarded-subject': 'subject-1',
  });
  t.equal(decodeURIComponent(headers['x-forwarded-name']!), 'Alice Zoë');
});

t.test('fallbacks: user from upn/email/sub, e-mail from upn only when it is an address', async (t) => {
  t.same(identity.fromClaims({ sub: 's', upn: 'bob@corp.example' }), {
    'x-forwarded-user': 'bob@corp.example',
    'x-forwarded-email': 'bob@corp.example',
    'x-forwarded-subject': 's',
  });
  t.same(identity.fromClaims({ sub: 's', upn: 'CORP\\bob' }), { 'x-forwarded-user': 'CORP\\bob', 'x-forwarded-subject': 's' });
  t.same(identity.fromClaims({ sub: 's', groups: [], name: '' }), { 'x-forwarded-user': 's', 'x-forwarded-subject': 's' });
});

t.test('a list is its items joined with ",": a "," inside an item cannot make two', async (t) => {
  const headers = identity.fromClaims({ sub: 's', groups: ['Users,Admins', 'R&D 100%', 'Zoë'], roles: ['a'] });
  t.equal(headers['x-forwarded-groups'], 'Users%2CAdmins,R&D 100%25,Zo%C3%AB');
  t.same(headers['x-forwarded-groups']!.split(',').map(decodeURIComponent), ['Users,Admins', 'R&D 100%', 'Zoë'], 'split, then decoded: the exact items');
});

t.test('an e-mail address the provider has not verified is no identity', async (t) => {
  for (const unverified of [{ email_verified: false }, { email_verified: 'false' }, { xms_edov: false }]) {
    const name = JSON.stringify(unverified);
    t.same(identity.fromClaims({ sub: 's', email: 'ceo@corp.example', ...unverified }), { 'x-forwarded-user': 's', 'x-forwarded-subject': 's' }, name);
    t.same(
      identity.fromClaims({ sub: 's', email: 'ceo@corp.example', upn: 'eve@corp.example', ...unverified }),
      { 'x-forwarded-user': 'eve@corp.example', 'x-forwarded-email': 'eve@corp.example', 'x-forwarded-subject': 's' },
      `${name}: the upn, which the tenant gives, still is`,
    );
  }
  t.same(identity.fromClaims({ sub: 's', email: 'a@corp.example', email_verified: true })['x-forwarded-email'], 'a@corp.example');
});

t.test('values are one clean line that decodes to the exact claim', async (t) => {
  const cases = ['plain', '100%', 'line\r\nX-Injected: 1', 'tab\there', '日本語', 'emoji 🎉', '\u0000nul', 'lone \ud800 surrogate'];
  for (const value of cases) {
    const encoded = encodeHeaderValue(value);
    t.match(encoded, /^[\x20-\x7e]*$/, `${JSON.stringify(value)} is printable ASCII`);
    t.equal(decodeURIComponent(encoded), value.toWellFormed(), `${JSON.stringify(value)} round-trips`);
  }
});

t.test('every spoofable variant of an identity header is stripped', async (t) => {
  const headers: Record<string, string> = {
    'x-forwarded-user': 'mallory',
    x_forwarded_user: 'mallory',
    'x_forwarded-email': 'm@evil.example',
    'x-forwarded_groups': 'admins',
    'x-auth-method': 'session',
    x_auth_method: 'bearer',
    'x-forwarded-client-id': 'app',
    'x-forwarded-access-token': 'forged',
    'x-forwarded-for': '10.0.0.1',
    accept: 'text/html',
  };
  identity.strip(headers);
  t.same(headers, { 'x-forwarded-for': '10.0.0.1', accept: 'text/html' });
});

t.test('configured header names are stripped and filled too', async (t) => {
  const custom = new IdentityHeaders({ 'X-Remote-User': 'email' });
  const headers: Record<string, string> = { 'x-remote-user': 'mallory', x_remote_user: 'mallory', 'x-forwarded-user': 'x', accept: '*/*' };
  custom.strip(headers);
  t.same(headers, { accept: '*/*' }, 'the default names are stripped too, even when not configured');
  t.same(custom.fromClaims({ email: 'a@b.example' }), { 'x-remote-user': 'a@b.example' });
});

t.test('with Azure AD the default subject header carries the object id', async (t) => {
  const azure = new IdentityHeaders(identityHeaderMap(DEFAULT_IDENTITY_HEADERS, 'azure'));
  t.equal(azure.fromClaims({ sub: 'pairwise-sub', oid: 'object-id' })['x-forwarded-subject'], 'object-id');
  t.equal(identity.fromClaims({ sub: 'pairwise-sub', oid: 'object-id' })['x-forwarded-subject'], 'pairwise-sub');
  const custom = { 'X-Forwarded-Subject': 'upn' };
  t.equal(identityHeaderMap(custom, 'azure'), custom, 'a configured mapping is kept');
});
