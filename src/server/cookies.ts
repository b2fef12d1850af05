/** Reading one cookie from a Cookie header, and writing Set-Cookie values: all the sidecar needs. */

/** The value of cookie `name` in a Cookie header, or undefined. The first occurrence wins. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  return header ? findCookie(header, `${name}=`, 0)?.value : undefined;
}

/** The values of every cookie `name` in a Cookie header, in order, at most `max`. */
export function readCookies(header: string | undefined, name: string, max: number): string[] {
  const values: string[] = [];
  if (!header) return values;
  const nameEquals = `${name}=`;
  for (let found = findCookie(header, nameEquals, 0); found && values.length < max; found = findCookie(header, nameEquals, found.end)) values.push(found.value);
  return values;
}

/** The first cookie `name=…` (given as `nameEquals`) at or after `from`, and where its pair ends. */
function findCookie(header: string, nameEquals: string, from: number): { value: string; end: number } | undefined {
  while (from < header.length) {
    const at = header.indexOf(nameEquals, from);
    if (at === -1) return undefined;
    const valueStart = at + nameEquals.length;
    if (at === 0 || header[at - 1] === ' ' || header[at - 1] === ';') {
      const semicolon = header.indexOf(';', valueStart);
      const end = semicolon === -1 ? header.length : semicolon;
      return { value: header.slice(valueStart, end).trim(), end };
    }
    from = valueStart;
  }
  return undefined;
}

/** A Cookie header without the cookies named in `names` (so the portal never sees the sidecar's). */
export function withoutCookies(header: string, names: readonly string[]): string {
  let kept = '';
  for (let start = 0; start < header.length; ) {
    const semicolon = header.indexOf(';', start);
    const end = semicolon === -1 ? header.length : semicolon;
    const pair = header.slice(start, end).trim();
    const equals = pair.indexOf('=');
    if (pair !== '' && !names.includes(equals === -1 ? pair : pair.slice(0, equals))) kept += kept === '' ? pair : '; ' + pair;
    start = end + 1;
  }
  return kept;
}

export interface CookieAttributes {
  path: string;
  domain?: string;
  secure: boolean;
  sameSite: 'lax' | 'strict' | 'none';
  /** Seconds; omitted for a browser-session cookie; 0 deletes. */
  maxAgeSeconds?: number;
}

/** A Set-Cookie header value; always HttpOnly. */
export function serializeCookie(name: string, value: string, attributes: CookieAttributes): string {
  let cookie = `${name}=${value}; Path=${attributes.path}; HttpOnly; SameSite=${capitalize(attributes.sameSite)}`;
  if (attributes.domain) cookie += `; Domain=${attributes.domain}`;
  if (attributes.secure) cookie += '; Secure';
  if (attributes.maxAgeSeconds !== undefined) cookie += `; Max-Age=${Math.max(0, Math.floor(attributes.maxAgeSeconds))}`;
  return cookie;
}

function capitalize(word: string): string {
  return word[0]!.toUpperCase() + word.slice(1);
}
