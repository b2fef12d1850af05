/**
 * Return-URL validation: where the browser may be sent after sign-in. Only the portal's own origin
 * qualifies. The candidate is parsed the way browsers parse it (WHATWG URL) and the re-serialized URL
 * is what gets used, never the raw text, so no trick in the input survives into a `Location` header.
 */

const MAX_RETURN_URL_LENGTH = 4096;

/**
 * The absolute URL to return to, or null when `candidate` is not a path or URL on `publicOrigin`.
 * Accepted: `/path?query` (not `//…`), or an absolute http(s) URL on the same origin.
 */
export function safeReturnUrl(candidate: string | null | undefined, publicOrigin: string): string | null {
  if (!candidate || candidate.length > MAX_RETURN_URL_LENGTH) return null;
  if (hasForbiddenCharacter(candidate)) return null;
  const isRelativePath = candidate.startsWith('/') && !candidate.startsWith('//');
  const isAbsoluteHttp = /^https?:\/\/[^/]/i.test(candidate);
  if (!isRelativePath && !isAbsoluteHttp) return null;
  let parsed: URL;
  try {
    parsed = new URL(candidate, publicOrigin);
  } catch {
    return null;
  }
  if (parsed.origin !== publicOrigin || parsed.username || parsed.password) return null;
  return parsed.href;
}

/** Control characters, whitespace, backslashes and non-ASCII text have no place in a return URL. */
function hasForbiddenCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code <= 0x20 || code >= 0x7f || code === 0x5c) return true;
  }
  return false;
}
