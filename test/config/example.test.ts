import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { configKeyPaths, loadConfig } from '../../src/config/index.js';

const EXAMPLE = fileURLToPath(new URL('../../config/sidecar.example.yaml', import.meta.url));
const SECRETS = {
  OIDC_SIDECAR_PROVIDER__CLIENT_SECRET: 'client-secret-for-the-example',
  OIDC_SIDECAR_SESSION__SECRET: 'session-secret-for-the-example-0123456789',
};

t.test('the example configuration loads once its secrets are given, and shows the true defaults', async (t) => {
  const example = await loadConfig({ file: EXAMPLE, env: SECRETS });
  t.same(example.warnings, []);
  const { upstream, publicUrl, provider } = example.config;
  const requiredOnly = await loadConfig({
    env: {
      ...SECRETS,
      OIDC_SIDECAR_UPSTREAM__URL: upstream.url,
      OIDC_SIDECAR_PUBLIC_URL: publicUrl,
      OIDC_SIDECAR_PROVIDER__ISSUER_URL: provider.issuerUrl,
      OIDC_SIDECAR_PROVIDER__CLIENT_ID: provider.clientId,
    },
  });
  t.same(example.config, requiredOnly.config, 'every value the example sets is the default');
});

/** `top` and `top.second` for every key the example names, set or commented out. */
function keysNamedIn(text: string): Set<string> {
  const named = new Set<string>();
  let section = '';
  for (const line of text.split('\n')) {
    const top = /^(#\s?)?([A-Za-z]\w*):/.exec(line);
    if (top) {
      named.add(top[2] ?? '');
      if (!top[1]) section = top[2] ?? '';
      continue;
    }
    const second = /^ {2}(?:#\s?)?([A-Za-z]\w*):/.exec(line);
    if (second && section) named.add(`${section}.${second[1]}`);
  }
  return named;
}

t.test('the example names every top-level and second-level key of the schema', async (t) => {
  const named = keysNamedIn(await readFile(EXAMPLE, 'utf8'));
  const expected = new Set(configKeyPaths().flatMap((path) => [path.slice(0, 1).join('.'), path.slice(0, 2).join('.')]));
  t.ok(expected.size > 50, 'the schema walk found the keys');
  for (const key of expected) t.ok(named.has(key), key);
});
