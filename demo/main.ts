import { randomBytes } from 'node:crypto';
import { configSchema } from '../src/config/schema.js';
import { createLogger, logProcessWarnings } from '../src/log/index.js';
import { startSidecar } from '../src/server/index.js';
import { DEMO_USERS, startIdp, type TestUser } from '../test/support/idp.js';
import { startPortal } from '../test/support/portal.js';

/**
 * `npm run demo`: the test identity provider, the legacy portal and the sidecar in front of it, in
 * one process on loopback. Ports: DEMO_PORT (sidecar, 4180), DEMO_IDP_PORT (4181), DEMO_PORTAL_PORT
 * (4199), DEMO_METRICS_PORT (9464).
 */

const HOST = '127.0.0.1';
const CLIENT_ID = 'legacy-portal';

type Stop = () => Promise<void>;

async function main(): Promise<void> {
  const ports = {
    sidecar: portFromEnv('DEMO_PORT', 4180),
    idp: portFromEnv('DEMO_IDP_PORT', 4181),
    portal: portFromEnv('DEMO_PORTAL_PORT', 4199),
    metrics: portFromEnv('DEMO_METRICS_PORT', 9464),
  };
  const publicUrl = `http://localhost:${ports.sidecar}`;
  const clientSecret = randomBytes(32).toString('base64url');
  const stops: Stop[] = [];
  const stopAll = () => stopInReverse(stops);
  try {
    const idp = await startIdp({
      port: ports.idp,
      clients: [{
        clientId: CLIENT_ID,
        clientSecret,
        redirectUris: [`${publicUrl}/oauth2/callback`],
        // The sidecar returns to its own sign_out page unless logout.redirectUrl is set.
        postLogoutRedirectUris: [`${publicUrl}/`, `${publicUrl}/oauth2/sign_out`],
        backchannelLogoutUri: `${publicUrl}/oauth2/backchannel-logout`,
      }],
    });
    stops.push(idp.stop);
    const portal = await startPortal({ port: ports.portal, host: HOST });
    stops.push(portal.stop);
    const config = configSchema.parse({
      listen: { host: HOST, port: ports.sidecar },
      metrics: { host: HOST, port: ports.metrics },
      upstream: { url: portal.url },
      publicUrl,
      provider: { issuerUrl: idp.issuer, clientId: CLIENT_ID, clientSecret },
      session: { store: 'memory', secret: randomBytes(32).toString('base64url') },
    });
    const logger = createLogger(config.log.level);
    logProcessWarnings(logger);
    const sidecar = await startSidecar(config, { logger });
    stops.push(() => sidecar.close());
    printBanner({ publicUrl, issuer: idp.issuer, portalUrl: portal.url, metricsUrl: sidecar.metricsUrl });
  } catch (error) {
    await stopAll();
    throw error;
  }
  stopOnSignals(stopAll);
}

function portFromEnv(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const port = Number(text);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${name} must be a port number (1-65535), not "${text}"`);
  return port;
}

async function stopInReverse(stops: Stop[]): Promise<void> {
  for (const stop of stops.splice(0).reverse()) await stop();
}

/** First SIGINT/SIGTERM: close everything and let the process end. A second one: exit at once. */
function stopOnSignals(stopAll: Stop): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    console.log(`\n${signal}: stopping the demo…`);
    stopAll().then(
      () => {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      },
      (error: unknown) => {
        console.error('demo: error while stopping:', error);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function printBanner(urls: { publicUrl: string; issuer: string; portalUrl: string; metricsUrl: string }): void {
  const rule = '─'.repeat(72);
  console.log(`
${rule}
  oidc-sidecar demo is running

  Open  ${urls.publicUrl}/  and sign in as:
${Object.values(DEMO_USERS).map(describeUser).join('\n')}

  Identity provider   ${urls.issuer}  (oidc-provider; client "${CLIENT_ID}")
  Legacy portal       ${urls.portalUrl}  (direct, without the sidecar)
  Metrics             ${urls.metricsUrl}/metrics

  Press Ctrl-C to stop.
${rule}
`);
}

function describeUser(user: TestUser): string {
  const credentials = `${user.username} / ${user.password}`.padEnd(26);
  const roles = user.roles.length > 0 ? `; roles ${user.roles.join(', ')}` : '';
  return `    ${credentials}${user.name}; groups ${user.groups.join(', ')}${roles}`;
}

main().catch((error: unknown) => {
  console.error(`demo: could not start: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
