import { startPortal } from '../support/portal.js';
import { serveFromChild } from './children.js';

/** The demo portal in a process of its own. It records every request: the records are dropped often. */
const FORGET_EVERY_MS = 500;

serveFromChild(async () => {
  const portal = await startPortal();
  const forget = setInterval(() => (portal.requests.length = 0), FORGET_EVERY_MS);
  return {
    url: portal.url,
    close: async () => {
      clearInterval(forget);
      await portal.stop();
    },
  };
});
