import { existsSync, readFileSync } from 'node:fs';

const SHARED_CORPUS = new URL('../../../shared/security/open-redirects.txt', import.meta.url);
const OWN_CORPUS = new URL('../fixtures/open-redirects.txt', import.meta.url);

/**
 * Open-redirect payloads: the full shared corpus when the checkout has it beside it, otherwise the
 * project's own smaller set.
 */
export function openRedirectPayloads(): string[] {
  const file = existsSync(SHARED_CORPUS) ? SHARED_CORPUS : OWN_CORPUS;
  return readFileSync(file, 'utf8').split('\n').filter((line) => line.length > 0);
}
