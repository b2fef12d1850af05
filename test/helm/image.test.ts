/**
 * The container image, checked without a Docker engine: the Dockerfile is parsed and its properties
 * checked (stages, Node 24, non-root user, production dependencies only, ports, entrypoint), the
 * .dockerignore is evaluated with Docker's matching rules, and the runtime stage's /app is laid out
 * in a temporary folder exactly as the Dockerfile copies it (dist compiled from src, package.json, a
 * node_modules holding only the production packages of package-lock.json) and started through its
 * entrypoint with `check-config`.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import ts from 'typescript';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { configSchema } from '../../src/config/schema.js';

const execFileAsync = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

// ---- a small Dockerfile parser -----------------------------------------------------------------

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

interface Stage {
  image: string;
  name: string;
  instructions: Instruction[];
}

/** Instructions with continuation lines joined and comments dropped; parser directives are comments too. */
function parseDockerfile(text: string): { args: Map<string, string>; stages: Stage[] } {
  const instructions: Instruction[] = [];
  let pending = '';
  let start = 0;
  text.split('\n').forEach((raw, index) => {
    const line = raw.trimEnd();
    if (pending === '' && /^\s*#/.test(line)) return;
    if (pending !== '' && /^\s*#/.test(line)) return; // comment lines inside a continuation are ignored
    if (pending === '') start = index + 1;
    if (line.endsWith('\\')) {
      pending += line.slice(0, -1) + ' ';
      return;
    }
    pending += line;
    const match = /^\s*([A-Za-z]+)\s*(.*)$/.exec(pending);
    if (match) instructions.push({ keyword: (match[1] ?? '').toUpperCase(), args: (match[2] ?? '').trim(), line: start });
    pending = '';
  });
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const [image = '', as, name] = instruction.args.split(/\s+/).filter((word) => !word.startsWith('--'));
      const resolved = image.replace(/\$\{?(\w+)\}?/g, (_, arg: string) => globalArgs.get(arg) ?? '');
      stages.push({ image: resolved, name: as?.toUpperCase() === 'AS' ? (name ?? '') : String(stages.length), instructions: [] });
    } else if (stages.length === 0) {
      if (instruction.keyword === 'ARG') {
        const [key = '', value = ''] = instruction.args.split('=');
        globalArgs.set(key, value);
      }
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  return { args: globalArgs, stages };
}

function all(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((instruction) => instruction.keyword === keyword);
}

/** `COPY [--from=x] [--chown=…] src… dest` → its options, sources and destination. */
function copyOf(instruction: Instruction): { from?: string; sources: string[]; dest: string } {
  const words = instruction.args.split(/\s+/);
  const options = words.filter((word) => word.startsWith('--'));
  const paths = words.filter((word) => !word.startsWith('--'));
  const from = options.find((option) => option.startsWith('--from='))?.slice('--from='.length);
  return { ...(from ? { from } : {}), sources: paths.slice(0, -1), dest: paths.at(-1) ?? '' };
}

/** ENV in both forms: `ENV A=1 B=2` and `ENV A 1`. */
function envOf(stage: Stage): Map<string, string> {
  const env = new Map<string, string>();
  for (const { args } of all(stage, 'ENV')) {
    if (!args.includes('=') || /^\S+\s/.test(args.split('=')[0] ?? '')) {
      const [key = '', ...rest] = args.split(/\s+/);
      env.set(key, rest.join(' '));
      continue;
    }
    for (const match of args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) env.set(match[1] ?? '', (match[2] ?? '').replace(/^"|"$/g, ''));
  }
  return env;
}

// ---- .dockerignore -----------------------------------------------------------------------------

/** Docker's rules: patterns match the path or any of its parents, the last matching pattern decides. */
function dockerIgnored(patterns: string[], path: string): boolean {
  let ignored = false;
  const parts = path.split('/');
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    const pattern = (negated ? raw.slice(1) : raw).replace(/^\/+|\/+$/g, '');
    const regex = new RegExp(
      '^' +
        pattern
          .split('/')
          .map((segment) => (segment === '**' ? '.*' : segment.replace(/[.+^${}()|[\]\\]/g, '\\$&').replaceAll('*', '[^/]*').replaceAll('?', '[^/]')))
          .join('/')
          .replaceAll('.*/', '(.*/)?') +
        '$',
    );
    const matches = parts.some((_, index) => regex.test(parts.slice(0, index + 1).join('/')));
    if (matches) ignored = !negated;
  }
  return ignored;
}

// ---- the tests ---------------------------------------------------------------------------------

const dockerfile = parseDockerfile(await readFile(join(ROOT, 'Dockerfile'), 'utf8'));
const ignorePatterns = (await readFile(join(ROOT, '.dockerignore'), 'utf8'))
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line !== '' && !line.startsWith('#'));
const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  bin: Record<string, string>;
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
};
const runtime = dockerfile.stages.at(-1) as Stage;
const stageNamed = (name: string) => dockerfile.stages.find((stage) => stage.name === name);

t.test('multi-stage on Node 24 LTS (Debian bookworm); the runtime stage is the last', async (t) => {
  t.ok(dockerfile.stages.length >= 2, `${dockerfile.stages.length} stages: ${dockerfile.stages.map((s) => s.name).join(', ')}`);
  t.equal(runtime.name, 'runtime');
  for (const stage of dockerfile.stages) {
    t.match(stage.image, /^(node:24-bookworm-slim|debian:bookworm-slim)(@sha256:[0-9a-f]{64})?$/, `${stage.name}: ${stage.image}`);
  }
  const node = all(runtime, 'COPY').map(copyOf).find((copy) => copy.dest === '/usr/local/bin/node');
  t.ok(node?.from && stageNamed(node.from)?.image.startsWith('node:24-'), 'the runtime node binary comes from the Node 24 image');
});

t.test('the runtime stage runs as a non-root numeric user', async (t) => {
  const users = all(runtime, 'USER');
  t.ok(users.length > 0, 'USER is set');
  const [user = '', group = ''] = (users.at(-1)?.args ?? '').split(':');
  t.match(user, /^[1-9]\d*$/, 'a numeric uid (runAsNonRoot can verify it)');
  t.equal(user, '65532');
  t.equal(group, '65532');
  const userIndex = runtime.instructions.indexOf(users.at(-1) as Instruction);
  t.notOk(
    runtime.instructions.slice(userIndex).some((instruction) => instruction.keyword === 'RUN'),
    'nothing runs as root after USER… and nothing runs at all after it',
  );
});

t.test('the runtime stage ships production dependencies only, and no sources', async (t) => {
  t.notOk(all(runtime, 'RUN').some((run) => /\bnpm\b|\byarn\b|\bpnpm\b/.test(run.args)), 'no package manager runs in the runtime stage');
  const copies = all(runtime, 'COPY').map(copyOf);
  t.ok(
    copies.every((copy) => copy.from),
    'everything is copied from a build stage, nothing from the context',
  );
  const modules = copies.find((copy) => copy.dest.replace(/\/$/, '').endsWith('node_modules'));
  t.ok(modules?.from, 'node_modules is copied from a stage');
  const source = stageNamed(modules?.from ?? '');
  t.ok(source, `stage ${modules?.from} exists`);
  const installs = source ? all(source, 'RUN').map((run) => run.args) : [];
  t.ok(
    installs.some((run) => /npm ci\b[^&]*--omit=dev/.test(run) || /npm prune\b[^&]*--omit=dev/.test(run)),
    `that stage installs without dev dependencies: ${installs.join(' | ')}`,
  );
  t.notOk(
    installs.some((run) => /npm ci\b(?![^&]*--omit=dev)/.test(run)),
    'and never with them',
  );
  t.ok(copies.some((copy) => copy.sources.includes('/app/dist') && copy.dest === './dist'), 'dist from the build stage');
  t.ok(copies.some((copy) => copy.sources.includes('/app/package.json')), 'package.json beside dist (src/version.ts reads ../package.json)');
  const build = stageNamed('build');
  t.ok(build && all(build, 'RUN').some((run) => run.args.includes('npm run build')), 'the build stage compiles');
});

t.test('environment, ports, entrypoint and health check', async (t) => {
  const env = envOf(runtime);
  t.equal(env.get('NODE_ENV'), 'production');
  t.equal(env.get('OIDC_SIDECAR_CONFIG'), '/etc/oidc-sidecar/config.yaml');
  const defaults = configSchema.parse({
    upstream: { url: 'http://127.0.0.1:8080' },
    publicUrl: 'https://portal.example.com',
    provider: { issuerUrl: 'https://idp.example.com', clientId: 'c', clientSecret: 's' },
    session: { secret: 'x'.repeat(32) },
  });
  const exposed = all(runtime, 'EXPOSE').flatMap((expose) => expose.args.split(/\s+/));
  t.same(exposed.sort(), [String(defaults.listen.port), String(defaults.metrics.port)].sort(), 'EXPOSE the default main and metrics ports');
  t.same(exposed.sort(), ['4180', '9464']);
  const entrypoint = all(runtime, 'ENTRYPOINT').at(-1)?.args ?? '';
  t.same(JSON.parse(entrypoint), ['node', '/app/dist/cli.js'], 'exec-form ENTRYPOINT');
  t.equal(`/app/${pkg.bin['oidc-sidecar']}`, '/app/dist/cli.js', 'the entrypoint is the package bin');
  t.notOk(all(runtime, 'CMD').length, 'no CMD: arguments go to the sidecar');
  t.equal(all(runtime, 'WORKDIR').at(-1)?.args, '/app');
  t.match(all(runtime, 'HEALTHCHECK').at(-1)?.args ?? '', /127\.0\.0\.1:' \+ \(process\.env\.OIDC_SIDECAR_METRICS__PORT \|\| 9464\) \+ '\/healthz/, 'HEALTHCHECK on /healthz, on the metrics port');
});

t.test('.dockerignore keeps the build context to what the Dockerfile copies', async (t) => {
  const contextSources = dockerfile.stages.flatMap((stage) => all(stage, 'COPY').map(copyOf).filter((copy) => !copy.from)).flatMap((copy) => copy.sources);
  t.ok(contextSources.length > 0);
  for (const source of contextSources) {
    t.ok(existsSync(join(ROOT, source)), `${source} exists`);
    t.notOk(dockerIgnored(ignorePatterns, source), `${source} is in the context`);
  }
  for (const file of ['src/cli.ts', 'src/config/schema.ts', 'tsconfig.build.json']) t.notOk(dockerIgnored(ignorePatterns, file), `${file} is in the context`);
  for (const file of ['node_modules/zod/package.json', 'dist/cli.js', '.git/HEAD', 'test/helm/chart.test.ts', 'helm/oidc-sidecar/values.yaml', '.env', 'coverage/lcov.info', '.tap/x', 'README.md', 'Dockerfile']) {
    t.ok(dockerIgnored(ignorePatterns, file), `${file} is left out`);
  }
});

t.test("the runtime /app works: dist from src, package.json, only the lockfile's production packages", async (t) => {
  const app = join(await mkdtemp(join(tmpdir(), 'oidc-sidecar-image-')), 'app');
  t.teardown(() => rm(dirname(app), { recursive: true, force: true }));

  // `npm run build`: tsc -p tsconfig.build.json, emitted file by file (the sources are isolatedModules).
  const configFile = ts.readConfigFile(join(ROOT, 'tsconfig.build.json'), (file) => ts.sys.readFile(file));
  const parsed = ts.parseJsonConfigFileContent(configFile.config, ts.sys, ROOT);
  t.equal(relative(ROOT, parsed.options.outDir ?? ''), 'dist');
  t.equal(relative(ROOT, parsed.options.rootDir ?? ''), 'src');
  t.match(pkg.scripts.build, /tsc -p tsconfig\.build\.json/);
  // package.json says "type": "module", so NodeNext emits ES modules; file by file that is module ES2022.
  const compilerOptions = { ...parsed.options, module: ts.ModuleKind.ES2022, moduleResolution: ts.ModuleResolutionKind.Bundler };
  for (const file of parsed.fileNames) {
    const output = ts.transpileModule(await readFile(file, 'utf8'), { compilerOptions, fileName: file });
    const target = join(app, 'dist', relative(join(ROOT, 'src'), file)).replace(/\.ts$/, '.js');
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, output.outputText);
  }
  await writeFile(join(app, 'package.json'), JSON.stringify(pkg));
  t.ok(existsSync(join(app, 'dist/cli.js')), 'dist/cli.js, the entrypoint, is built');

  // `npm ci --omit=dev`: the lockfile's packages that are not dev-only.
  const lock = JSON.parse(await readFile(join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean; hasInstallScript?: boolean; gypfile?: boolean }>;
  };
  const production = Object.entries(lock.packages)
    .filter(([path, entry]) => path.startsWith('node_modules/') && !path.slice('node_modules/'.length).includes('node_modules/') && !entry.dev)
    .map(([path]) => path);
  t.ok(production.length > 0 && production.length < 60, `${production.length} production packages`);
  const native = Object.entries(lock.packages).filter(([path, entry]) => path.startsWith('node_modules/') && !entry.dev && (entry.hasInstallScript || entry.gypfile));
  t.same(native, [], 'no production package builds native code (the JavaScript stages run on the build platform)');
  let bytes = 0;
  for (const path of production) {
    await mkdir(dirname(join(app, path)), { recursive: true });
    await symlink(join(ROOT, path), join(app, path), 'dir');
    bytes += await sizeOf(join(ROOT, path));
  }
  t.comment(`production node_modules: ${(bytes / 1e6).toFixed(1)} MB (the image adds this to the base and the node binary)`);
  t.ok(bytes < 40e6, 'production dependencies stay small');

  // Every package the code imports is a production dependency.
  const imported = new Set<string>();
  for (const file of parsed.fileNames) {
    for (const { fileName: specifier } of ts.preProcessFile(await readFile(file, 'utf8'), true, true).importedFiles) {
      if (specifier.startsWith('.') || specifier.startsWith('node:')) continue;
      imported.add(specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : (specifier.split('/')[0] ?? ''));
    }
  }
  t.ok(imported.size > 3, `the code imports ${[...imported].join(', ')}`);
  for (const name of imported) t.ok(name in pkg.dependencies, `${name} is a production dependency`);

  // The entrypoint, with symlinks kept so that a package can only find the production packages.
  const config = join(dirname(app), 'config.yaml');
  await writeFile(
    config,
    toYaml({
      upstream: { url: 'http://127.0.0.1:8080' },
      publicUrl: 'https://portal.example.com',
      provider: { issuerUrl: 'https://idp.example.com', clientId: 'portal' },
      session: { store: 'redis' },
      redis: { url: 'redis://127.0.0.1:6379' },
    }),
  );
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    NODE_ENV: 'production',
    OIDC_SIDECAR_CONFIG: config,
    OIDC_SIDECAR_PROVIDER__CLIENT_SECRET: 'client-secret-for-the-image-test',
    OIDC_SIDECAR_SESSION__SECRET: 'session-secret-for-the-image-test-0123456789',
  };
  const { stdout } = await execFileAsync(process.execPath, ['--preserve-symlinks', '--preserve-symlinks-main', join(app, 'dist/cli.js'), 'check-config'], {
    cwd: dirname(app),
    env,
  });
  const printed = parseYaml(stdout) as { provider: { clientSecret: string }; listen: { port: number } };
  t.equal(printed.provider.clientSecret, '[redacted]', 'check-config through the entrypoint, configuration from OIDC_SIDECAR_CONFIG');
  t.equal(printed.listen.port, 4180);
});

async function sizeOf(path: string): Promise<number> {
  const info = await stat(path);
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const entry of await readdir(path)) total += await sizeOf(join(path, entry));
  return total;
}
