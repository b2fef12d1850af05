import type { Config } from '../config/schema.js';
import type { Logger } from '../log/index.js';

/** A started sidecar: its main and metrics servers, ready to serve. */
export interface RunningSidecar {
  /** Base URL of the main port as bound (e.g. http://127.0.0.1:4180). */
  url: string;
  /** Base URL of the metrics port as bound. */
  metricsUrl: string;
  /** Stops accepting requests, closes the servers, the store and the proxy agent. */
  close(): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
}

export async function startSidecar(_config: Config, _options: StartOptions = {}): Promise<RunningSidecar> {
  throw new Error('startSidecar: being written');
}
