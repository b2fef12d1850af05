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
