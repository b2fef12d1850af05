import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, listen } from './free-port.js';

/** A throw-away redis-server on a free loopback port, with nothing persisted. */
export interface RedisServer {
  url: string;
  port: number;
  /** Stops the server (by PID); safe to call twice. */
  stop(): Promise<void>;
}

const STARTUP_TIMEOUT_MS = 5_000;
const START_ATTEMPTS = 3;
const OUTPUT_KEPT = 4_000;

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const server of running) server.kill('SIGKILL');
});

/**
 * Starts `redis-server` (the `REDIS_SERVER` environment variable, else the one on PATH) and resolves
 * once it answers PING. A port taken between choosing and binding it is retried on another port.
 * `argv` gives the command line for a port (default: a plain server).
 */
export async function startRedis(argv: (port: number) => string[] = plainServer): Promise<RedisServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(await freePort(), argv);
    } catch (error) {
      if (attempt === START_ATTEMPTS) throw error;
    }
  }
}

function plainServer(port: number): string[] {
  return ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
}

/** Redis Sentinel watching `master` under the name `portal`; `nodes` as `redis.sentinel.nodes` takes them. */
export async function startSentinel(master: RedisServer): Promise<RedisServer & { masterName: string; nodes: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'oidc-sidecar-sentinel-'));
  const masterName = 'portal';
  const sentinel = await startRedis((port) => {
    const file = join(dir, `sentinel-${port}.conf`);
    writeFileSync(file, [`port ${port}`, 'bind 127.0.0.1', `sentinel monitor ${masterName} 127.0.0.1 ${master.port} 1`, ''].join('\n'));
    return [file, '--sentinel'];
  });
  return { ...sentinel, masterName, nodes: [`127.0.0.1:${sentinel.port}`], stop: () => sentinel.stop().finally(() => rm(dir, { recursive: true, force: true })) };
}

/** A Redis Cluster of three masters, its slots spread over them; `nodes` as `redis.cluster.nodes` takes them. */
export async function startCluster(): Promise<{ nodes: string[]; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'oidc-sidecar-cluster-'));
  const servers: RedisServer[] = [];
  const stop = async () => {
    for (const server of servers) await server.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < 3; i++) {
      servers.push(await startRedis((port) => [...plainServer(port), '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--dir', dir]));
    }
    const nodes = servers.map((server) => `127.0.0.1:${server.port}`);
    await run('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-replicas', '0', '--cluster-yes']);
    await waitForClusterState(servers[0]!.port);
    return { nodes, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function run(command: string, args: string[]): Promise<void> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} failed (${code}):\n${output.slice(-OUTPUT_KEPT)}`);
}

async function waitForClusterState(port: number): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const child = spawn('redis-cli', ['-p', String(port), 'cluster', 'info'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let info = '';
    child.stdout.on('data', (chunk: Buffer) => (info += chunk.toString()));
    await once(child, 'exit');
    if (info.includes('cluster_state:ok')) return;
    await sleep(50);
  }
  throw new Error(`the Redis Cluster did not reach cluster_state:ok within ${STARTUP_TIMEOUT_MS} ms`);
}

async function startOnce(port: number, argv: (port: number) => string[]): Promise<RedisServer> {
  const executable = process.env.REDIS_SERVER ?? 'redis-server';
  const server = spawn(executable, argv(port), {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-OUTPUT_KEPT));
  server.stdout?.on('data', keep);
  server.stderr?.on('data', keep);
  await spawned(server, executable);
  running.add(server);
  const watchdog = startWatchdog(server);
  const stop = () => stopServer(server, watchdog);
  try {
    await waitForPong(server, port, () => output);
  } catch (error) {
    await stop();
    throw error;
  }
  // A test that forgets stop() must not hang on the child: the exit hook and the watchdog end it.
  for (const handle of [server, server.stdout, server.stderr] as (ChildProcess | Socket | null)[]) handle?.unref();
  return { url: `redis://127.0.0.1:${port}`, port, stop };
}

async function spawned(server: ChildProcess, executable: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('spawn', resolve);
    server.once('error', (error) => reject(new Error(`cannot run ${executable} (set REDIS_SERVER to its path): ${error.message}`)));
  });
}

/**
 * Exit hooks do not run when the test process is killed by a signal (a tap time-out): this shell
 * waits for its stdin, our end of a pipe, to close, which happens however we die, then kills redis.
 */
function startWatchdog(server: ChildProcess): ChildProcess {
  const watchdog = spawn('sh', ['-c', 'read _; kill "$0" 2>/dev/null', String(server.pid)], { stdio: ['pipe', 'ignore', 'ignore'] });
  watchdog.unref();
  (watchdog.stdin as unknown as Socket | null)?.unref();
  return watchdog;
}

async function waitForPong(server: ChildProcess, port: number, output: () => string): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (server.exitCode !== null) throw new Error(`redis-server exited with code ${server.exitCode}:\n${output()}`);
    if (await answersPing(port)) return;
    await sleep(20);
  }
  throw new Error(`redis-server did not answer PING on port ${port} within ${STARTUP_TIMEOUT_MS} ms:\n${output()}`);
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (answered: boolean) => {
      socket.destroy();
      resolve(answered);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    // A server with requirepass answers, if only to say it wants a password.
    socket.once('data', (data) => done(/^(\+PONG|-NOAUTH)/.test(data.toString())));
  });
}

async function stopServer(server: ChildProcess, watchdog: ChildProcess): Promise<void> {
  watchdog.kill('SIGKILL');
  if (server.exitCode === null && server.signalCode === null) {
    const exited = once(server, 'exit');
    server.kill('SIGTERM');
    const forced = setTimeout(() => server.kill('SIGKILL'), 2_000);
    await exited;
    clearTimeout(forced);
  }
  running.delete(server);
}

export interface RedisRelay {
  /** A redis:// URL through the relay. */
  url: string;
  /** From now on (or, with false, no longer) what Redis sends to subscribed connections is dropped. */
  silenceSubscribers(silence?: boolean): void;
  stop(): Promise<void>;
}

/**
 * A TCP relay to Redis that can silence the connections subscribed to invalidations: what Redis
 * sends them is dropped, as on a connection that died without either side noticing.
 */
export async function startRedisRelay(redisPort: number): Promise<RedisRelay> {
  let silenced = false;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(redisPort, '127.0.0.1');
    let subscriber = false;
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => undefined).on('close', () => {
        client.destroy();
        upstream.destroy();
        sockets.delete(socket);
      });
    }
    client.on('data', (chunk: Buffer) => {
      if (chunk.toString('latin1').toUpperCase().includes('SUBSCRIBE')) subscriber = true;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!(subscriber && silenced)) client.write(chunk);
    });
  });
  const port = await listen(server, 0, '127.0.0.1');
  return {
    url: `redis://127.0.0.1:${port}`,
    silenceSubscribers: (silence = true) => void (silenced = silence),
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
