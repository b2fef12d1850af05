import t from 'tap';
import { bindingHash, LoginTransactions, MAX_RETURN_URL_IN_STATE, TRANSACTION_TTL_MS } from '../../src/oidc/transactions.js';
import { MemoryStore } from '../../src/session/memory-store.js';

const SECRET = 'a-session-secret-of-at-least-32-bytes!';
const ORIGIN = 'https://portal.example.com';

function setup() {
  let now = Date.parse('2026-03-01T12:00:00Z');
  const clock = () => now;
  const store = new MemoryStore({ clock });
  t.teardown(() => store.close());
  const transactions = new LoginTransactions(store, SECRET, clock);
  const attempt = (returnTo = `${ORIGIN}/reports?year=2026`) =>
    transactions.begin({ returnTo, bindingHash: bindingHash('browser-binding') });
  return { transactions, store, attempt, advance: (ms: number) => void (now += ms) };
}

t.test('the state carries the whole transaction, sealed: nothing is stored until a sign-in succeeds', async (t) => {
  const { transactions, store, attempt } = setup();
  const begun = attempt();
  t.equal(store.size, 0, 'starting a sign-in writes nothing');
  t.match(begun.state, /^[A-Za-z0-9_-]+$/);
  t.ok(begun.state.length < 250, `a short state (${begun.state.length} characters)`);
  t.notOk(Buffer.from(begun.state, 'base64url').toString('latin1').includes('reports'), 'nothing readable in it');
  t.match(begun.nonce, /^[A-Za-z0-9_-]{43}$/);
  t.match(begun.codeVerifier, /^[A-Za-z0-9_-]{43}$/, 'a PKCE verifier of 43 unreserved characters');
  t.not(begun.nonce, begun.codeVerifier);
  const another = attempt();
  t.not(another.nonce, begun.nonce, 'each transaction has its own nonce …');
  t.not(another.codeVerifier, begun.codeVerifier, '… and verifier');
  t.same(transactions.open(begun.state), begun, 'opened: the same nonce and verifier, derived again');
  t.same(transactions.open(begun.state), begun, 'opened again: whether it was used, its claim tells');
});

t.test('a state is claimed for one code exchange at a time, and given back when the exchange failed', async (t) => {
  const { transactions, store, attempt } = setup();
  const begun = attempt();
  const claims = await Promise.all([transactions.claim(begun), transactions.claim(begun)]);
  t.equal(claims.filter(Boolean).length, 1, 'two callbacks at once: one claims it');
  t.equal(store.size, 1);
  await claims.find(Boolean)!();
  const again = await transactions.claim(begun);
  t.ok(again, 'given back after a failed exchange: the callback may be tried again');
  t.equal(await transactions.claim(begun), null, 'claimed and kept (a successful exchange): a replay gets nothing');
});

t.test('a forged, altered, foreign-keyed, oversized or expired state opens to nothing', async (t) => {
  const { transactions, store, attempt, advance } = setup();
  const begun = attempt();
  const altered = begun.state.slice(0, 40) + (begun.state[40] === 'A' ? 'B' : 'A') + begun.state.slice(41);
  const otherKey = new LoginTransactions(store, 'another-session-secret-of-32-bytes!!', () => Date.now()).begin({ returnTo: `${ORIGIN}/`, bindingHash: 'b' });
  for (const state of ['', 'forged', altered, otherKey.state, 'A'.repeat(5000), begun.state + '%00']) t.equal(transactions.open(state), null, state.slice(0, 20));
  advance(TRANSACTION_TTL_MS - 1);
  t.ok(transactions.open(begun.state), 'good until the last millisecond');
  advance(1);
  t.equal(transactions.open(begun.state), null, 'expired');
  t.equal(await transactions.claim(begun), null, 'an expired state cannot be claimed');
  t.equal(store.size, 0);
});

t.test('a long return URL comes back to its path, or to the start page', async (t) => {
  const { transactions, attempt } = setup();
  const longQuery = `${ORIGIN}/reports?filter=${'x'.repeat(MAX_RETURN_URL_IN_STATE)}`;
  const withoutQuery = attempt(longQuery);
  t.equal(withoutQuery.returnTo, `${ORIGIN}/reports`);
  t.equal(transactions.open(withoutQuery.state)?.returnTo, `${ORIGIN}/reports`);
  t.equal(attempt(`${ORIGIN}/${'p'.repeat(MAX_RETURN_URL_IN_STATE)}`).returnTo, `${ORIGIN}/`);
  const longest = attempt(`${ORIGIN}/${'p'.repeat(MAX_RETURN_URL_IN_STATE - ORIGIN.length - 1)}`);
  t.equal(longest.returnTo.length, MAX_RETURN_URL_IN_STATE, 'the longest kept whole');
  t.ok(transactions.open(longest.state), 'and its state still opens');
});
