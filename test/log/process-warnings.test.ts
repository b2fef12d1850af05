import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { tsxChildEnv } from '../support/tsx-child.js';

const LOG = fileURLToPath(new URL('../../src/log/index.ts', import.meta.url));

type Warning = { message: string; type?: string; code: string };
const OTHER_WARNING: Warning = { message: 'Possible EventEmitter memory leak detected.', type: 'MaxListenersExceededWarning', code: 'TEST_WARNING' };

/** A process that logs its warnings as the sidecar does, then has Node emit the warnings given. */
async function runEmitting(warnings: Warning[], nodeOptions: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; stderr: string }> {
  const script = `
    const { createLogger, logProcessWarnings } = await import(${JSON.stringify(LOG)});
    logProcessWarnings(createLogger('info'));
    for (const { message, ...options } of ${JSON.stringify(warnings)}) process.emitWarning(message, options);
  `;
  const child = spawn(process.execPath, [...nodeOptions, '--import', 'tsx', '--input-type=module', '-e', script], { env: tsxChildEnv(env) });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += String(chunk)));
  child.stderr.on('data', (chunk: Buffer) => (stderr += String(chunk)));
  const [code] = await once(child, 'exit');
  if (code !== 0) throw new Error(`the process exited with ${String(code)}: ${stderr}`);
  return { stdout, stderr };
}

t.test("Node's warnings become JSON log lines; http-proxy's known deprecation is left out", async (t) => {
  const { stdout, stderr } = await runEmitting([
    // What Node 22 and later emit when http-proxy forwards a request.
    { message: 'The `util._extend` API is deprecated. Please use Object.assign() instead.', type: 'DeprecationWarning', code: 'DEP0060' },
    OTHER_WARNING,
  ]);
  t.equal(stderr, '', "Node's own plain-text lines are gone");
  const lines = stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  t.equal(lines.length, 1);
  t.match(lines[0], {
    level: 40,
    msg: 'process warning',
    warning: { name: 'MaxListenersExceededWarning', code: 'TEST_WARNING', message: 'Possible EventEmitter memory leak detected.' },
  });
  t.notMatch(stdout, /util\._extend|DEP0060/);
});

t.test("Node's warning options still apply", async (t) => {
  for (const option of ['--disable-warning=TEST_WARNING', '--disable-warning=MaxListenersExceededWarning']) {
    const silenced = await runEmitting([OTHER_WARNING], [option]);
    t.same(silenced, { stdout: '', stderr: '' }, `${option}: neither logged nor printed`);
  }
  const fromNodeOptions = await runEmitting([OTHER_WARNING], [], { NODE_OPTIONS: '--disable-warning=TEST_WARNING' });
  t.same(fromNodeOptions, { stdout: '', stderr: '' }, 'also in NODE_OPTIONS');
  const none = await runEmitting([OTHER_WARNING], ['--no-warnings']);
  t.same(none, { stdout: '', stderr: '' }, '--no-warnings: none at all');
  const traced = await runEmitting([OTHER_WARNING], ['--trace-warnings']);
  t.equal(traced.stdout, '', "--trace-warnings: Node's own handling …");
  t.match(traced.stderr, /MaxListenersExceededWarning: Possible EventEmitter memory leak detected\.\n\s+at /, '… with the stack asked for');
});
