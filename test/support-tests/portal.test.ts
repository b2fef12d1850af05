import { createHash, randomBytes } from 'node:crypto';
import { Agent, request, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { freePort } from '../support/free-port.js';
import { startPortal, type LegacyPortal } from '../support/portal.js';

async function startTestPortal(t: Test): Promise<LegacyPortal> {
  const portal = await startPortal();
  t.teardown(() => portal.stop());
  return portal;
}

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

async function eventually(condition: () => boolean, timeoutMs = 2000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await sleep(10);
  return condition();
}

t.test('every request is recorded with its target as received and a digest of its body', async (t) => {
  const portal = await startTestPortal(t);
  const body = randomBytes(3000);
  const response = await fetch(`${portal.url}/echo?a=%7e&b=/x/../y`, { method: 'POST', body, headers: { 'x-test': 'one' } });
  const echoed = (await response.json()) as Record<string, unknown>;
  t.match(echoed, { method: 'POST', url: '/echo?a=%7e&b=/x/../y', bodyLength: 3000, bodySha256: sha256(body), headers: { 'x-test': 'one' } });
  t.equal(portal.requests.length, 1);
  t.match(portal.requests[0], { method: 'POST', url: '/echo?a=%7e&b=/x/../y', bodyLength: 3000, bodySha256: sha256(body), aborted: false });
  t.ok(portal.requests[0]?.rawHeaders.includes('x-test'));
});

t.test('the portal page shows the identity headers decoded and escaped', async (t) => {
  const portal = await startTestPortal(t);
  const headers = {
    'X-Forwarded-User': 'alice',
    'X-Forwarded-Name': 'Alice%20Zo%C3%AB%20Example',
    'X-Forwarded-Groups': '<script>alert(1)</script>',
    'X-Auth-Method': 'session',
  };
  const html = await (await fetch(`${portal.url}/some/page?x=1`, { headers })).text();
  t.match(html, '<h1>Legacy portal</h1>');
  t.match(html, '<th scope="row">X-Forwarded-Name</th><td>Alice Zoë Example</td>');
  t.match(html, '<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>');
  t.notMatch(html, '<script>');
  t.match(html, '<th scope="row">X-Forwarded-Email</th><td>(not sent)</td>');
  t.match(html, '<a href="/oauth2/sign_out">Sign out</a>');
  t.match(html, /<th scope="row">x-forwarded-name<\/th><td>Alice%20Zo%C3%AB%20Example<\/td>/i, 'the raw header list');

  const json = await (await fetch(`${portal.url}/some/page`, { headers: { ...headers, accept: 'application/json' } })).json();
  t.match(json, {
    portal: 'legacy',
    url: '/some/page',
    identity: { 'X-Forwarded-User': 'alice', 'X-Forwarded-Name': 'Alice Zoë Example', 'X-Auth-Method': 'session' },
  });
  t.notOk('X-Forwarded-Email' in (json as { identity: object }).identity);
});

t.test('/1k is exactly 1024 bytes of HTML and /big streams N KiB', async (t) => {
  const portal = await startTestPortal(t);
  const oneK = await fetch(`${portal.url}/1k`);
  t.equal(oneK.headers.get('content-type'), 'text/html; charset=utf-8');
  t.equal((await oneK.arrayBuffer()).byteLength, 1024);
  const big = await fetch(`${portal.url}/big?kb=300`);
  t.equal(big.headers.get('content-length'), String(300 * 1024));
  t.equal((await big.arrayBuffer()).byteLength, 300 * 1024);
});

t.test('/cut sends half the answer it promised, then drops the connection', async (t) => {
  const portal = await startTestPortal(t);
  const cut = await fetch(`${portal.url}/cut?kb=4`);
  t.equal(cut.headers.get('content-length'), String(8 * 1024));
  await t.rejects(cut.arrayBuffer(), 'the body ends early');
});

t.test('/slow answers late, and stops waiting when the client goes away', async (t) => {
  const portal = await startTestPortal(t);
  const started = Date.now();
  t.equal(await (await fetch(`${portal.url}/slow?ms=100`)).text(), 'answered after 100 ms\n');
  t.ok(Date.now() - started >= 100);
  t.equal(portal.requests[0]?.aborted, false);

  await t.rejects(fetch(`${portal.url}/slow?ms=60000`, { signal: AbortSignal.timeout(100) }));
  t.ok(await eventually(() => portal.requests[1]?.aborted === true), 'recorded as aborted');
});

t.test('/early answers 413 before the body, and counts the connection ending before the body as aborted', async (t) => {
  const portal = await startTestPortal(t);
  const whole = await fetch(`${portal.url}/early`, { method: 'POST', body: randomBytes(3000) });
  t.equal(whole.status, 413);
  t.ok(await eventually(() => portal.requests[0]?.bodyLength === 3000), 'the body is still read');
  t.equal(portal.requests[0]?.aborted, false);

  const req = request(`${portal.url}/early`, { method: 'POST', headers: { 'content-length': '100000' }, agent: false });
  req.on('error', () => undefined);
  const status = new Promise<number | undefined>((resolve) => req.on('response', (res: IncomingMessage) => resolve(res.statusCode)));
  req.write(randomBytes(1000));
  t.equal(await status, 413, 'answered while the body is on its way');
  req.destroy();
  t.ok(await eventually(() => portal.requests[1]?.aborted === true), 'recorded as aborted');
});

t.test('connections are kept alive', async (t) => {
  const portal = await startTestPortal(t);
  const agent = new Agent({ keepAlive: true });
  t.teardown(() => agent.destroy());
  const get = () =>
    new Promise<IncomingMessage & { reused: boolean }>((resolve, reject) => {
      const req = request(`${portal.url}/`, { agent }, (res) => res.resume().on('end', () => resolve(Object.assign(res, { reused: req.reusedSocket }))));
      req.on('error', reject).end();
    });
  t.equal((await get()).reused, false);
  t.equal((await get()).reused, true);
});

t.test('/ws upgrades with a correct Sec-WebSocket-Accept and echoes bytes', async (t) => {
  const portal = await startTestPortal(t);
  const key = randomBytes(16).toString('base64');
  const { response, socket } = await new Promise<{ response: IncomingMessage; socket: Socket }>((resolve, reject) => {
    request(`${portal.url}/ws`, { headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': key, 'sec-websocket-version': '13' } })
      .on('upgrade', (res, upgradedSocket) => resolve({ response: res, socket: upgradedSocket }))
      .on('error', reject)
      .end();
  });
  t.teardown(() => socket.destroy());
  t.equal(response.statusCode, 101);
  t.equal(response.headers['sec-websocket-accept'], createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64'));
  const frame = Buffer.from([0x81, 0x85, 1, 2, 3, 4, 0x69, 0x67, 0x6f, 0x68, 0x6e]);
  socket.write(frame);
  const echoed = await new Promise<Buffer>((resolve) => socket.once('data', resolve));
  t.same(echoed, frame);
  t.match(portal.requests[0], { method: 'GET', url: '/ws' });
});

t.test('/ws without an upgrade answers 426; an upgrade elsewhere is refused', async (t) => {
  const portal = await startTestPortal(t);
  t.equal((await fetch(`${portal.url}/ws`)).status, 426);
  const status = await new Promise<number | undefined>((resolve, reject) => {
    request(`${portal.url}/other`, { headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': 'x' } })
      .on('response', (res) => resolve(res.statusCode))
      .on('error', reject)
      .end();
  });
  t.equal(status, 400);
});

t.test('startPortal can take a port found by freePort', async (t) => {
  const port = await freePort();
  const portal = await startPortal({ port });
  t.teardown(() => portal.stop());
  t.equal(portal.port, port);
  t.equal(portal.url, `http://127.0.0.1:${port}`);
  t.equal((await fetch(`${portal.url}/`)).status, 200);
});
