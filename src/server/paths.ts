/**
 * The request path as routing sees it. Route decisions (own endpoints, public routes, API routes) are
 * made on the normalized path only: never on the query string, a fragment or a forwarded header.
 */

export type PathResult = { ok: true; normalized: string } | { ok: false; reason: string };

const UNRESERVED = /[A-Za-z0-9\-._~]/;
const REPEATED_SLASHES = /\/{2,}/g;
const MAX_PATH_LENGTH = 8192;

/**
 * Splits the request target, refuses what could make a route decision ambiguous, and decodes
 * percent-encoded unreserved characters. Refused: anything but an origin-form target, a raw `#`,
 * dot segments (raw or encoded, also with path parameters such as `..;x`, which servlet containers
 * resolve as `..`), an encoded `/` or `\`, a raw `\`, a NUL or other control character. Repeated
 * slashes count as one, as they do for the portal: it gets `/a//b` as `/a/b` (src/proxy/upstream.ts).
 */
export function normalizeRequestPath(requestTarget: string | undefined): PathResult {
  if (!requestTarget || requestTarget[0] !== '/') return { ok: false, reason: 'request target is not an absolute path' };
  const queryStart = requestTarget.indexOf('?');
  const rawPath = queryStart === -1 ? requestTarget : requestTarget.slice(0, queryStart);
  if (rawPath.length > MAX_PATH_LENGTH) return { ok: false, reason: 'path too long' };
  if (rawPath.includes('#')) return { ok: false, reason: 'path holds a fragment' };
  if (rawPath.includes('\\')) return { ok: false, reason: 'path holds a backslash' };
  const decoded = decodeUnreserved(rawPath);
  if (decoded === null) return { ok: false, reason: 'path holds an encoded slash, backslash or control character' };
  const normalized = decoded.includes('//') ? decoded.replace(REPEATED_SLASHES, '/') : decoded;
  if (hasDotSegment(normalized)) return { ok: false, reason: 'path holds a dot segment' };
  return { ok: true, normalized };
}

/** Decodes `%XX` only where XX is an unreserved character; null for forbidden encodings. */
function decodeUnreserved(path: string): string | null {
  if (!path.includes('%')) return hasControlCharacter(path) ? null : path;
  let result = '';
  for (let i = 0; i < path.length; i++) {
    const char = path[i]!;
    if (char !== '%') {
      result += char;
      continue;
    }
    const hex = path.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return null;
    const code = parseInt(hex, 16);
    if (code < 0x20 || code === 0x7f || code === 0x2f || code === 0x5c) return null;
    const decoded = String.fromCharCode(code);
    result += UNRESERVED.test(decoded) ? decoded : '%' + hex.toUpperCase();
    i += 2;
  }
  return hasControlCharacter(result) ? null : result;
}

function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

/** Path parameters (`;…`, raw or encoded): servlet containers drop them before resolving `..`. */
const PATH_PARAMETERS = /(;|%3B).*$/;

function hasDotSegment(path: string): boolean {
  // Every segment follows a `/` (the path starts with one), so a dot segment needs a `/.`.
  if (!path.includes('/.')) return false;
  for (const segment of path.split('/')) {
    const name = segment.replace(PATH_PARAMETERS, '');
    if (name === '.' || name === '..') return true;
  }
  return false;
}

/** A list of route patterns compiled once; `matches` runs on the normalized path. */
export class RouteList {
  readonly #patterns: RegExp[];

  constructor(sources: readonly string[]) {
    this.#patterns = sources.map((source) => new RegExp(source));
  }

  matches(normalizedPath: string): boolean {
    for (const pattern of this.#patterns) {
      if (pattern.test(normalizedPath)) return true;
    }
    return false;
  }
}
