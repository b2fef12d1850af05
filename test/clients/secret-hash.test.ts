import { Readable, Writable } from 'node:stream';
import t from 'tap';
import { main } from '../../src/cli.js';
import { hashSecret, verifySecret } from '../../src/clients/index.js';
import { configSchema } from '../../src/config/index.js';

class Capture extends Writable {
  text = '';

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    this.text += String(chunk);
    done();
  }
}

t.test('a hashed secret verifies; another secret, a tampered or malformed hash does not', async (t) => {
  const hash = await hashSecret('s3cret: with spaces+%');
  t.match(hash, /^scrypt\$32768\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
  t.not(await hashSecret('s3cret: with spaces+%'), hash, 'fresh salt each time');
  t.ok(await verifySecret('s3cret: with spaces+%', hash));
  t.notOk(await verifySecret('s3cret: with spaces+', hash));
  const tampered = hash.slice(0, -2) + (hash.endsWith('AA') ? 'BB' : 'AA');
  t.notOk(await verifySecret('s3cret: with spaces+%', tampered));
  for (const malformed of ['', 'plain', hash.replace('32768', '1000'), hash.replace('32768', String(2 ** 24)), hash.replace('$8$', '$0$')]) {
    t.notOk(await verifySecret('s3cret: with spaces+%', malformed), `malformed: ${malformed.slice(0, 20)}`);
  }
});

t.test('the configuration accepts only hashes in the format, never a plain secret', async (t) => {
  const app = { clientId: 'job', grantTypes: ['client_credentials'], routes: ['^/api/'] };
  const base = { upstream: { url: 'http://127.0.0.1:1' }, publicUrl: 'http://127.0.0.1:2', provider: { issuerUrl: 'http://127.0.0.1:3', clientId: 'x', clientSecret: 'y' }, session: { secret: 'z'.repeat(32) } };
  const parse = (extra: object) => configSchema.safeParse({ ...base, applications: [{ ...app, ...extra }] });
  t.ok(parse({ clientSecretHash: await hashSecret('x') }).success);
  t.notOk(parse({ clientSecretHash: 'scrypt$oops' }).success);
  t.notOk(parse({ clientSecret: 'plain' }).success);
  const withParameters = (N: number, r: number, p: number) => `scrypt$${N}$${r}$${p}$${'A'.repeat(22)}$${'B'.repeat(43)}`;
  t.ok(parse({ clientSecretHash: withParameters(2 ** 18, 8, 1) }).success, '256 MiB of scrypt memory is the most');
  t.notOk(parse({ clientSecretHash: withParameters(2 ** 20, 8, 1) }).success, '1 GiB is refused');
  t.notOk(parse({ clientSecretHash: withParameters(2 ** 18, 8, 16) }).success, 'more than 64 × the default work is refused');
});

t.test('oidc-sidecar hash-secret prints one line from one line of input, and refuses an empty one', async (t) => {
  const run = async (input: string) => {
    const io = { stdout: new Capture(), stderr: new Capture(), env: {}, stdin: Readable.from([input]) };
    return { code: await main(['hash-secret'], io), stdout: io.stdout.text, stderr: io.stderr.text };
  };
  const printed = await run('top-secret\nignored second line\n');
  t.equal(printed.code, 0);
  t.match(printed.stdout, /^scrypt\$[^\n]+\n$/);
  t.ok(await verifySecret('top-secret', printed.stdout.trim()));
  t.ok(await verifySecret('no newline', (await run('no newline')).stdout.trim()), 'input without a final newline');
  t.ok(await verifySecret('windows', (await run('windows\r\n')).stdout.trim()), 'CRLF');
  const empty = await run('\n');
  t.equal(empty.code, 1);
  t.equal(empty.stdout, '');
  t.match(empty.stderr, /no secret given/);
});

t.test('on a terminal the secret is read in raw mode, without echo', async (t) => {
  const modes: boolean[] = [];
  const stdin = Object.assign(Readable.from(['pass', 'x\u007fword', '\r']), { isTTY: true, setRawMode: (mode: boolean) => void modes.push(mode) });
  const io = { stdout: new Capture(), stderr: new Capture(), env: {}, stdin };
  t.equal(await main(['hash-secret'], io), 0);
  t.same(modes, [true, false]);
  t.ok(await verifySecret('password', io.stdout.text.trim()), 'backspace erases');
  t.notMatch(io.stderr.text, /pass/, 'nothing typed is echoed');
});
