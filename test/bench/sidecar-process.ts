import type { Config } from '../../src/config/schema.js';
import { startSidecar } from '../../src/server/index.js';
import { serveFromChild } from './children.js';

/**
 * A sidecar replica in a process of its own, with the configuration of the benchmark's stack: it
 * shares that stack's Redis and secret, so the session cookie signed in there is valid here.
 */
serveFromChild(async (config: Config) => {
  const sidecar = await startSidecar({ ...config, listen: { ...config.listen, port: 0 }, metrics: { ...config.metrics, port: 0 } });
  return { url: sidecar.url, close: () => sidecar.close() };
});
