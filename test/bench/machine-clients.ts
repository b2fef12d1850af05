import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashSecret } from '../../src/clients/index.js';
import { certificateClaims, makeCertificate, makePrivateKeyPem, signJwt } from '../support/applications.js';
import { request } from '../support/http.js';

/** The benchmark's machine client: one application with a certificate and a client secret, allowed on the page. */
export interface BenchMachineClient {
  /** `applications` and `clients` configuration, merged into the stack's. */
  config: Record<string, unknown>;
  /** A valid `X-ClientCertificate-Token` (RS256), valid for an hour. */
  certificateToken: string;
  /** An access token from the sidecar at `baseUrl` (client credentials grant). */
  bearerToken(baseUrl: string): Promise<string>;
  stop(): Promise<void>;
}

const CLIENT_ID = 'bench-job';

export async function prepareMachineClient(path: string): Promise<BenchMachineClient> {
  const dir = await mkdtemp(join(tmpdir(), 'oidc-sidecar-bench-'));
  const certificate = await makeCertificate(dir, CLIENT_ID, `${CLIENT_ID}.example.com`);
  // Shared by the in-process replica that issues the bearer token and the measured one that verifies it.
  const signingKeyFile = join(dir, 'signing-keys.pem');
  await writeFile(signingKeyFile, await makePrivateKeyPem('EC'));
  const secret = randomBytes(24).toString('base64url');
  const application = {
    clientId: CLIENT_ID,
    grantTypes: ['client_credentials', 'client_certificate'],
    clientSecretHash: await hashSecret(secret),
    certificateFile: certificate.derFile,
    routes: [`^${path}$`],
  };
  return {
    config: { applications: [application], clients: { signingKeyFile } },
    certificateToken: signJwt({ alg: 'RS256' }, certificateClaims(CLIENT_ID, certificate.commonName), certificate.privateKey),
    async bearerToken(baseUrl) {
      const answer = await request(`${baseUrl}/oauth2/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${secret}`).toString('base64')}` },
        body: 'grant_type=client_credentials',
      });
      if (answer.status !== 200) throw new Error(`the token endpoint answered ${answer.status}: ${answer.body}`);
      return (JSON.parse(answer.body) as { access_token: string }).access_token;
    },
    stop: () => rm(dir, { recursive: true, force: true }),
  };
}
