import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../log/index.js';
import type { UpstreamFailure } from '../proxy/upstream.js';
import { acceptsHtml, answerSocket, sendHtml, sendJson } from './responses.js';
import { REQUEST_ID_HEADER } from './services.js';

const ANSWERS: Record<UpstreamFailure, { status: number; title: string; message: string }> = {
  refused: { status: 502, title: 'Portal unavailable', message: 'The portal is not answering right now. Please try again in a moment.' },
  reset: { status: 502, title: 'Portal unavailable', message: 'The portal closed the connection. Please try again in a moment.' },
  timeout: { status: 504, title: 'Portal too slow', message: 'The portal took too long to answer. Please try again in a moment.' },
};

/** Answers a request the portal failed: 502 (refused or dropped) or 504 (too slow), each its own page. */
export function answerUpstreamFailure(logger: Logger, failure: UpstreamFailure, req: IncomingMessage, res: ServerResponse | Duplex, error: Error): void {
  const requestId = String(req.headers[REQUEST_ID_HEADER]);
  logger.warn({ failure, code: (error as NodeJS.ErrnoException).code, requestId }, 'the portal request failed');
  const answer = ANSWERS[failure];
  if (!('writeHead' in res)) {
    answerSocket(res, `${answer.status} ${answer.title}`);
    return;
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (!acceptsHtml(req)) {
    return sendJson(res, answer.status, { error: failure === 'timeout' ? 'gateway_timeout' : 'bad_gateway', error_description: answer.message });
  }
  sendHtml(res, answer.status, { title: answer.title, message: answer.message, requestId });
}
