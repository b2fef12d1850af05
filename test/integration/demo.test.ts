import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { CookieJar, signInWithoutBrowser } from '../support/browserless.js';
import { request } from '../support/http.js';
import { NAVIGATION } from '../support/stack.js';
import { tsxChildEnv } from '../support/tsx-child.js';

const DEMO = fileURLToPath(new URL('../../demo/main.ts', import.meta.url));

/** `npm run demo` as the README describes it: its default ports, sign in as alice, see her on the portal page. */
t.test('the demo signs alice in on its default ports', async (t) => {
  const demo = spawn(process.execPath, ['--import', 'tsx', DEMO], { env: tsxChildEnv() });
  let output = '';
  demo.stdout.on('data', (chunk: Buffer) => (output += String(chunk)));
  demo.stderr.on('data', (chunk: Buffer) => (output += String(chunk)));
  const exited = once(demo, 'exit');
  t.teardown(() => void demo.kill('SIGKILL'));
  await until(() => output.includes('demo is running') || demo.exitCode !== null, () => output);
  t.match(output, /Open {2}http:\/\/localhost:4180\//);

  const sidecar = 'http://localhost:4180';
  await until(async () => (await request('http://127.0.0.1:9464/readyz')).status === 200, () => output);
  const start = await request(sidecar + '/', { headers: NAVIGATION });
  t.equal(start.status, 302);
  const callback = new URL(await signInWithoutBrowser(String(start.headers.location), 'alice', 'alice-password', new CookieJar()));
  const signedIn = await request(sidecar + callback.pathname + callback.search, { headers: { ...NAVIGATION, cookie: `_oidc_sidecar_csrf=${start.cookies._oidc_sidecar_csrf}` } });
  t.equal(signedIn.status, 302);
  const page = await request(sidecar + '/', { headers: { ...NAVIGATION, cookie: `_oidc_sidecar=${signedIn.cookies._oidc_sidecar}` } });
  t.equal(page.status, 200);
  t.match(page.body, /Legacy portal/);
  t.match(page.body, /Alice Zoë Example/);

  demo.kill('SIGINT');
  const [code] = await exited;
  t.equal(code, 0, 'Ctrl-C stops it cleanly');
});

async function until(condition: () => boolean | Promise<boolean>, context: () => string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await condition()) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`timed out; the demo said:\n${context()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
