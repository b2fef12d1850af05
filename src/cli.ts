#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { stringify as toYaml } from 'yaml';
import { AUDIT_OPTIONS, AUDIT_SUMMARY, AUDIT_USAGE, runAuditCommand } from './audit/index.js';
import { ApplicationRegistry, ApplicationsError, hashSecret, readSecretLine, TokenIssuer, type SecretInput } from './clients/index.js';
import { ConfigError, formatConfigProblems, loadConfig, redactConfig, type Config, type LoadedConfig } from './config/index.js';
import { createLogger, logProcessWarnings, type Logger } from './log/index.js';
import { providerClientAuth } from './oidc/provider.js';
import { startSidecar, type RunningSidecar } from './server/index.js';
import { runSessionsCommand, SESSIONS_OPTIONS, SESSIONS_SUMMARY, SESSIONS_USAGE } from './session/index.js';

/** Where a command reads and writes: the process's own streams, or test doubles. */
export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
  /** Default `process.stdin`. */
  stdin?: SecretInput;
}

export interface ParsedArgs {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

/** One subcommand: its usage line, its own options, and what it does; resolves to the exit code. */
interface Command {
  usage: string;
  summary: string;
  options: NonNullable<ParseArgsConfig['options']>;
  allowPositionals?: boolean;
  run(args: ParsedArgs, io: CliIo): Promise<number>;
}

const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
const DEFAULT_COMMAND = 'start';
const SHUTDOWN_SIGNALS = ['SIGTERM', 'SIGINT'] as const;
/**
 * On SIGTERM: `/readyz` answers 503 while requests are still served for a while (Kubernetes and the
 * ingress take the pod out meanwhile), then the requests in flight get a while to finish — together
 * within the default 30 s termination grace period.
 */
const SHUTDOWN = { drainMs: 5000, finishMs: 20_000 };

const HELP_OPTION = { help: { type: 'boolean', short: 'h' } } as const;
const CONFIG_OPTION = { config: { type: 'string', short: 'c' } } as const;

const COMMANDS = new Map<string, Command>([
  ['start', { usage: 'start [--config FILE]', summary: 'run the sidecar (the default command)', options: CONFIG_OPTION, run: start }],
  [
    'check-config',
    {
      usage: 'check-config [--config FILE]',
      summary: 'validate the configuration and print it, secrets redacted',
      options: CONFIG_OPTION,
      run: checkConfig,
    },
  ],
  ['hash-secret', { usage: 'hash-secret', summary: 'read a client secret from standard input, print its clientSecretHash', options: {}, run: hashSecretCommand }],
  ['sessions', { usage: SESSIONS_USAGE, summary: SESSIONS_SUMMARY, options: { ...CONFIG_OPTION, ...SESSIONS_OPTIONS }, allowPositionals: true, run: sessionsCommand }],
  ['audit', { usage: AUDIT_USAGE, summary: AUDIT_SUMMARY, options: { ...CONFIG_OPTION, ...AUDIT_OPTIONS }, run: audit }],
]);

/** Runs one command line (without `node` and the script) and resolves to the process exit code. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const [first] = argv;
  const named = first !== undefined && !first.startsWith('-');
  const name = named ? first : DEFAULT_COMMAND;
  const command = COMMANDS.get(name);
  if (!command) return usageError(io, `unknown command "${name}"`);
  let args: ParsedArgs;
  try {
    args = parseArgs({
      args: named ? argv.slice(1) : [...argv],
      options: { ...HELP_OPTION, ...command.options },
      allowPositionals: command.allowPositionals ?? false,
      strict: true,
    });
  } catch (error) {
    return usageError(io, (error as Error).message);
  }
  if (args.values.help) {
    io.stdout.write(usage());
    return EXIT_OK;
  }
  return command.run(args, io);
}

function usage(): string {
  const width = Math.max(...[...COMMANDS.values()].map((command) => command.usage.length));
  const commands = [...COMMANDS.values()].map((command) => `  oidc-sidecar ${command.usage.padEnd(width)}   ${command.summary}`);
  return [
    'usage:',
    ...commands,
    '',
    'options:',
    '  -c, --config FILE   the configuration file (YAML or JSON); default $OIDC_SIDECAR_CONFIG',
    '  -h, --help          print this help',
    '',
    'Every configuration key can also be set by an environment variable: OIDC_SIDECAR_ + the key path',
    'in UPPER_SNAKE_CASE, segments joined by "__" (provider.clientSecret → OIDC_SIDECAR_PROVIDER__CLIENT_SECRET).',
    '',
  ].join('\n');
}

function usageError(io: CliIo, message: string): number {
  io.stderr.write(`oidc-sidecar: ${message}\n\n${usage()}`);
  return EXIT_USAGE;
}

/** `--config`, else `$OIDC_SIDECAR_CONFIG`, else none (environment variables only). */
function configFileOf(args: ParsedArgs, io: CliIo): string | undefined {
  return typeof args.values.config === 'string' ? args.values.config : io.env.OIDC_SIDECAR_CONFIG || undefined;
}

/** The configuration of `--config` and the environment; on problems, prints them and resolves to undefined. */
async function loadConfigOrReport(args: ParsedArgs, io: CliIo): Promise<LoadedConfig | undefined> {
  const file = configFileOf(args, io);
  try {
    return await loadConfig({ file, env: io.env });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    io.stderr.write(formatConfigProblems(error.problems));
    return undefined;
  }
}

async function checkConfig(args: ParsedArgs, io: CliIo): Promise<number> {
  const loaded = await loadConfigOrReport(args, io);
  if (!loaded) return EXIT_FAILURE;
  const problems = await fileProblems(loaded.config);
  if (problems.length > 0) {
    io.stderr.write(formatConfigProblems(problems));
    return EXIT_FAILURE;
  }
  for (const warning of loaded.warnings) io.stderr.write(`warning: ${warning}\n`);
  io.stdout.write(toYaml(redactConfig(loaded.config)));
  return EXIT_OK;
}

/**
 * Reads every key and certificate file the configuration names, as `start` would (the provider's
 * `private_key_jwt` key and certificate, `clients.signingKeyFile`, the applications' files): one
 * line per unusable file, naming its key.
 */
async function fileProblems(config: Config): Promise<string[]> {
  const problemOf = (error: unknown) => (error instanceof ApplicationsError ? error.problems : [error instanceof Error ? error.message : String(error)]);
  const checks = [
    providerClientAuth(config.provider),
    config.clients.signingKeyFile === undefined ? undefined : TokenIssuer.create({ keyFile: config.clients.signingKeyFile, issuer: config.publicUrl, ttlSeconds: 1, clock: Date.now }),
    ApplicationRegistry.load(config.applications),
  ];
  const outcomes = await Promise.allSettled(checks);
  return outcomes.flatMap((outcome) => (outcome.status === 'rejected' ? problemOf(outcome.reason) : []));
}

/** Reads one line (not echoed on a terminal) and prints its `scrypt$…` hash for `clientSecretHash`. */
async function hashSecretCommand(_args: ParsedArgs, io: CliIo): Promise<number> {
  const secret = await readSecretLine(io.stdin ?? process.stdin, io.stderr);
  if (!secret) {
    io.stderr.write('oidc-sidecar: no secret given: type it, or pipe it in, on one line\n');
    return EXIT_FAILURE;
  }
  io.stdout.write(`${await hashSecret(secret)}\n`);
  return EXIT_OK;
}

async function audit(args: ParsedArgs, io: CliIo): Promise<number> {
  const loaded = await loadConfigOrReport(args, io);
  return loaded ? runAuditCommand(loaded.config, args.values, io) : EXIT_FAILURE;
}

async function sessionsCommand(args: ParsedArgs, io: CliIo): Promise<number> {
  const loaded = await loadConfigOrReport(args, io);
  return loaded ? runSessionsCommand(loaded.config, args.positionals, args.values, io) : EXIT_FAILURE;
}

async function start(args: ParsedArgs, io: CliIo): Promise<number> {
  const loaded = await loadConfigOrReport(args, io);
  if (!loaded) return EXIT_FAILURE;
  const { config, warnings } = loaded;
  const logger = createLogger(config.log.level, io.stdout);
  logProcessWarnings(logger);
  for (const warning of warnings) logger.warn(warning);
  // A signal while starting (provider discovery may take seconds) ends the process at once.
  const exitWhileStarting = (signal: NodeJS.Signals) => {
    logger.info({ signal }, 'signal while starting: exiting');
    process.exit(EXIT_FAILURE);
  };
  for (const name of SHUTDOWN_SIGNALS) process.once(name, exitWhileStarting);
  let sidecar: RunningSidecar;
  try {
    sidecar = await startSidecar(config, { logger, configFile: configFileOf(args, io), env: io.env });
  } catch (error) {
    logger.fatal({ err: error }, 'oidc-sidecar could not start');
    return EXIT_FAILURE;
  } finally {
    for (const name of SHUTDOWN_SIGNALS) process.off(name, exitWhileStarting);
  }
  return closeOnSignal(sidecar, logger);
}

/** Waits for SIGTERM or SIGINT, then closes gracefully; a second signal exits at once. */
async function closeOnSignal(sidecar: RunningSidecar, logger: Logger): Promise<number> {
  const signal = await nextSignal();
  logger.info({ signal, ...SHUTDOWN }, 'closing: not ready, still serving for drainMs, then finishing the requests in flight (a second signal exits at once)');
  const exitNow = (second: NodeJS.Signals) => {
    logger.warn({ signal: second }, 'second signal: exiting without waiting');
    process.exit(EXIT_FAILURE);
  };
  for (const name of SHUTDOWN_SIGNALS) process.once(name, exitNow);
  try {
    await sidecar.close(SHUTDOWN);
    logger.info('closed');
    return EXIT_OK;
  } catch (error) {
    logger.error({ err: error }, 'closing failed');
    return EXIT_FAILURE;
  } finally {
    for (const name of SHUTDOWN_SIGNALS) process.off(name, exitNow);
  }
}

function nextSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      for (const name of SHUTDOWN_SIGNALS) process.off(name, onSignal);
      resolve(signal);
    };
    for (const name of SHUTDOWN_SIGNALS) process.once(name, onSignal);
  });
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  process.exitCode = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
}
