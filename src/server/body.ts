import type { IncomingMessage } from 'node:http';

/** Thrown when a request body is too large or not the expected type; `status` is the HTTP answer. */
export class BodyError extends Error {
  constructor(
    readonly status: 400 | 413 | 415,
    message: string,
  ) {
    super(message);
  }
}

/** Reads an `application/x-www-form-urlencoded` body of at most `maxBytes`. */
export async function readFormBody(req: IncomingMessage, maxBytes: number): Promise<URLSearchParams> {
  if (!req.headers['content-type']?.toLowerCase().startsWith('application/x-www-form-urlencoded')) {
    throw new BodyError(415, 'the body must be application/x-www-form-urlencoded');
  }
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBytes) throw new BodyError(413, 'the body is too large');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new BodyError(413, 'the body is too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}
