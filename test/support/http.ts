import http from 'node:http';

/** A response read whole. */
export interface HttpAnswer {
  status: number;
  statusMessage: string;
  /** Header names and values as received, duplicates kept. */
  rawHeaders: string[];
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The cookies set, name → value. */
  cookies: Record<string, string>;
}

/**
 * One HTTP request with node:http, redirects not followed. Tests use it rather than `fetch`, which
 * always sends `sec-fetch-mode: cors` and so cannot act as a browser's top-level navigation.
 * The path after the origin is sent exactly as given (no `..` resolution, `#` kept).
 */
export function request(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const { origin, rawPath } = splitUrl(url);
    const { hostname, port } = new URL(origin);
    const requestOptions = { hostname, port, path: rawPath, method: options.method ?? 'GET', headers: options.headers, agent: false };
    const req = http.request(requestOptions, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () =>
        resolve({ status: res.statusCode!, statusMessage: res.statusMessage!, rawHeaders: res.rawHeaders, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), cookies: cookiesOf(res.headers) }),
      );
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

function cookiesOf(headers: http.IncomingHttpHeaders): Record<string, string> {
  const cookies: Record<string, string> = {};
  for (const header of headers['set-cookie'] ?? []) {
    const [pair] = header.split(';');
    const at = pair!.indexOf('=');
    cookies[pair!.slice(0, at)] = pair!.slice(at + 1);
  }
  return cookies;
}

function splitUrl(url: string): { origin: string; rawPath: string } {
  const pathStart = url.indexOf('/', url.indexOf('//') + 2);
  return pathStart === -1 ? { origin: url, rawPath: '/' } : { origin: url.slice(0, pathStart), rawPath: url.slice(pathStart) };
}
