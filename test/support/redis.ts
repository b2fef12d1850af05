import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './free-port.js';

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
 */
export async function startRedis(): Promise<RedisServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(await freePort());
    } catch (error) {
      if (attempt === START_ATTEMPTS) throw error;
    }
  }
}

async function startOnce(port: number): Promise<RedisServer> {
  const executable = process.env.REDIS_SERVER ?? 'redis-server';
  const server = spawn(executable, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
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
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')));
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
