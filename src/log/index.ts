import { pino, stdTimeFunctions, type Logger as PinoLogger, type DestinationStream } from 'pino';

export type Logger = PinoLogger;

/** Paths pino replaces with "[redacted]" wherever a log call passes them by mistake. */
const SECRET_FIELDS = ['cookie', 'authorization', 'secret', 'password', 'token', 'accessToken', 'idToken', 'refreshToken', 'clientSecret'];
const REDACTED_PATHS = [
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((field) => `*.${field}`),
  'headers["x-clientcertificate-token"]',
  // ioredis puts the command that failed on its error — for a refused AUTH, with the password.
  'err.command.args',
];

/** The process logger: one JSON object a line on stdout (or `destination`), secrets redacted. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'oidc-sidecar' },
      timestamp: stdTimeFunctions.isoTime,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    },
    destination,
  );
}

/**
 * Deprecations inside dependencies, known and harmless, that the process cannot act on: http-proxy
 * 1.18 (unmaintained) calls `util._extend` for every WebSocket upgrade it forwards, a warning on Node 22 and later.
 */
const DEPENDENCY_DEPRECATIONS = new Set(['DEP0060']);

/** Node options by which an operator decides where warnings go: then Node's own handling stays. */
const OWN_WARNING_HANDLING = /(?:^|\s)"?--(?:no-warnings|trace-warnings|redirect-warnings)(?:[=\s"]|$)/;
/** `--disable-warning=X`, as given on the command line or in NODE_OPTIONS (where it may be quoted). */
const DISABLED_WARNING = /(?:^|\s)"?--disable-warning[=\s]"?([^\s"]+)/g;

/**
 * Node's process warnings as log lines, one JSON object each, in place of the plain-text lines Node
 * writes to stderr, which log collectors take for errors; the dependencies' known deprecations are
 * left out. Node's options still apply: `--no-deprecation` and `--disable-warning=CODE|TYPE` (in the
 * command line or NODE_OPTIONS) silence what they name; with `--no-warnings`, `--trace-warnings` or
 * `--redirect-warnings` (or NODE_NO_WARNINGS=1) Node handles warnings as it was asked to.
 */
export function logProcessWarnings(logger: Logger, env: NodeJS.ProcessEnv = process.env, execArgv: readonly string[] = process.execArgv): void {
  const nodeOptions = [...execArgv, env.NODE_OPTIONS ?? ''].join(' ');
  if (env.NODE_NO_WARNINGS === '1' || OWN_WARNING_HANDLING.test(nodeOptions)) return;
  const silenced = new Set([...DEPENDENCY_DEPRECATIONS, ...Array.from(nodeOptions.matchAll(DISABLED_WARNING), (match) => match[1]!)]);
  process.removeAllListeners('warning');
  process.on('warning', (warning: Error & { code?: string }) => {
    if ((warning.code !== undefined && silenced.has(warning.code)) || silenced.has(warning.name)) return;
    logger.warn({ warning: { name: warning.name, code: warning.code, message: warning.message } }, 'process warning');
  });
}
