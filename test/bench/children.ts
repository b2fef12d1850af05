import { fork, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { startProfiling, type StopProfiling } from './profile.js';

/**
 * Benchmark processes: every server under test and the load generator run in a child process of
 * their own (own event loop, own heap, own RSS), started with tsx and driven over IPC.
 *
 * Parent side: `startServerChild` / `runInChild`. Child side: `serveFromChild` / `answerFromChild`.
 */

/** A server running in a child process. */
export interface ServerChild {
  url: string;
  pid: number;
  /** The last lines the child wrote to stdout (its log), for diagnostics. */
  output(): string[];
  /** Starts the V8 CPU profiler in the child. */
  startProfile(): Promise<void>;
  /** Stops it and has the child write the profile (`.cpuprofile`, for Chrome DevTools) to `file`. */
  stopProfile(file: string): Promise<void>;
  /** Asks the child to close and exit, then waits (killed after 10 s). */
  stop(): Promise<void>;
}

type ToChild = { input: unknown } | { startProfile: true } | { stopProfile: string } | { stop: true };
type FromChild = { ready: string } | { result: unknown } | { profiling: true } | { profileWritten: string } | { failed: string };
type AnswerKey = 'ready' | 'result' | 'profiling' | 'profileWritten';

const START_TIMEOUT_MS = 20_000;
const PROFILE_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;
const OUTPUT_LINES_KEPT = 50;

/** Starts `script` (a file of this folder) in a child process and waits until its server listens. */
export async function startServerChild(script: string, input: unknown, cpus?: string): Promise<ServerChild> {
  const child = forkScript(script, cpus);
  const output = keepOutput(child);
  const url = String(await ask(child, { input }, 'ready', START_TIMEOUT_MS));
  return {
    url,
    pid: child.pid!,
    output: () => [...output],
    startProfile: async () => void (await ask(child, { startProfile: true }, 'profiling', PROFILE_TIMEOUT_MS)),
    stopProfile: async (file) => void (await ask(child, { stopProfile: file }, 'profileWritten', PROFILE_TIMEOUT_MS)),
    stop: () => stopChild(child),
  };
}

/** Runs `script` in a child process with `input` and resolves with what it answered. */
export async function runInChild<T>(script: string, input: unknown, timeoutMs: number, cpus?: string): Promise<T> {
  const child = forkScript(script, cpus);
  try {
    return (await ask(child, { input }, 'result', timeoutMs)) as T;
  } finally {
    child.kill();
  }
}

/** `cpus` (a `taskset` CPU list such as `0` or `1-3`) confines the child, all its threads, to those CPUs. */
function forkScript(script: string, cpus?: string): ChildProcess {
  const path = fileURLToPath(new URL(script, import.meta.url));
  const execArgv = ['--import', 'tsx'];
  const stdio: ['ignore', 'pipe', 'inherit', 'ipc'] = ['ignore', 'pipe', 'inherit', 'ipc'];
  if (cpus === undefined) return fork(path, [], { execArgv, stdio });
  return spawn('taskset', ['--cpu-list', cpus, process.execPath, ...execArgv, path], { stdio });
}

function keepOutput(child: ChildProcess): string[] {
  const lines: string[] = [];
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    lines.push(...chunk.split('\n').filter(Boolean));
    lines.splice(0, Math.max(0, lines.length - OUTPUT_LINES_KEPT));
  });
  return lines;
}

/** Sends `message` and waits for the child's `key` answer (a failure, an exit or the time-out rejects). */
function ask(child: ChildProcess, message: ToChild, key: AnswerKey, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`${key} not received within ${timeoutMs} ms`)), timeoutMs);
    const onExit = (code: number | null) => fail(new Error(`child exited (code ${code}) before it answered`));
    const onMessage = (answer: FromChild) => {
      if ('failed' in answer) return fail(new Error(answer.failed));
      if (key in answer) settle(() => resolve((answer as Record<string, unknown>)[key]));
    };
    function settle(outcome: () => void) {
      clearTimeout(timer);
      child.off('message', onMessage).off('exit', onExit);
      outcome();
    }
    function fail(error: Error) {
      settle(() => reject(error));
      child.kill('SIGKILL');
    }
    child.on('message', onMessage).once('exit', onExit);
    child.send(message);
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.send({ stop: true } satisfies ToChild);
  const forced = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(forced);
}

/** Child side: starts a server from the parent's input, reports its URL, profiles and closes on request. */
export function serveFromChild<I>(start: (input: I) => Promise<{ url: string; close(): Promise<void> }>): void {
  let close = async () => {};
  let stopProfiling: StopProfiling | undefined;
  const answer = (run: () => Promise<FromChild>) => run().then((reply) => process.send!(reply), reportFailure);
  process.on('message', (message: ToChild) => {
    if ('input' in message) {
      return answer(async () => {
        const server = await start(message.input as I);
        close = () => server.close();
        return { ready: server.url };
      });
    }
    if ('startProfile' in message) {
      return answer(async () => {
        stopProfiling = await startProfiling();
        return { profiling: true };
      });
    }
    if ('stopProfile' in message) {
      return answer(async () => {
        await stopProfiling?.(message.stopProfile);
        return { profileWritten: message.stopProfile };
      });
    }
    void close().finally(() => process.exit(0));
  });
  exitWithParent();
}

/** Child side: answers one input with `run`'s result, then exits. */
export function answerFromChild<I, O>(run: (input: I) => Promise<O>): void {
  process.once('message', (message: ToChild) => {
    if (!('input' in message)) return;
    run(message.input as I).then(
      (result) => process.send!({ result } satisfies FromChild, () => process.exit(0)),
      (error: unknown) => reportFailure(error),
    );
  });
  exitWithParent();
}

function reportFailure(error: unknown): void {
  const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.send!({ failed: text } satisfies FromChild, () => process.exit(1));
}

/** A benchmark child never outlives the benchmark, even when the parent crashed. */
function exitWithParent(): void {
  process.on('disconnect', () => process.exit(0));
}
