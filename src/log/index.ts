import { pino, stdTimeFunctions, type Logger as PinoLogger, type DestinationStream } from 'pino';

export type Logger = PinoLogger;

/** Paths pino replaces with "[redacted]" wherever a log call passes them by mistake. */
const REDACTED_PATHS = [
  '*.cookie', '*.authorization', '*.secret', '*.password', '*.token', '*.accessToken', '*.idToken',
  '*.refreshToken', '*.clientSecret', 'headers.cookie', 'headers.authorization', 'headers["x-clientcertificate-token"]',
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
 * 1.18 (unmaintained) calls `util._extend` for every request it forwards, a warning on Node 22 and later.
 */
const DEPENDENCY_DEPRECATIONS = new Set(['DEP0060']);

/**
 * Node's process warnings as log lines, one JSON object each, in place of the plain-text lines Node
 * writes to stderr, which log collectors take for errors; the dependencies' known deprecations are
 * left out. `--no-deprecation` and `--disable-warning=CODE` still silence what they name.
 */
export function logProcessWarnings(logger: Logger): void {
  process.removeAllListeners('warning');
  process.on('warning', (warning: Error & { code?: string }) => {
    if (warning.code !== undefined && DEPENDENCY_DEPRECATIONS.has(warning.code)) return;
    logger.warn({ warning: { name: warning.name, code: warning.code, message: warning.message } }, 'process warning');
  });
}
