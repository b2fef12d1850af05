import { existsSync } from 'node:fs';
import os from 'node:os';
import { delimiter, join } from 'node:path';
import { request } from '../support/http.js';
import { startRedis } from '../support/redis.js';
import { signIn, startStack } from '../support/stack.js';
import { runInChild, startServerChild, type ServerChild } from './children.js';
import type { Loader, LoadInput, LoadResult } from './load-process.js';
import { prepareMachineClient } from './machine-clients.js';
import { chooseCpuPlacement, findRedisServer, memoryOf, startCpuMeter, type CpuPlacement, type WatchedProcess } from './proc.js';
import { summarizeProfile } from './profile.js';
import { recordingMicrosecondsPerRequest } from './recording-cost.js';
import { capacityRatio, cpuPerRequest, formatTable, formatVerdicts, formatWarnings, type Measurement, type PairedRun, type PairedSide } from './report.js';

/**
 * `npm run bench`: the same 1 KiB portal page fetched directly, through a bare http-proxy and through
 * the sidecar (Redis-backed session, client-certificate token, sidecar bearer token), on loopback.
 * Each server and the load generator (wrk when installed, else autocannon) run in their own
 * process; the proxies share a CPU of their own (see CpuPlacement).
 *
 * Every round starts each proxy afresh, warms it up, measures it alone (rounds alternate the
 * order), then loads each row with a baseline at the same moment as its baseline. A process's
 * luck of the draw (memory placement, JIT decisions) moves its speed by up to ±10 % for its whole
 * life on a shared VM, and the machine's own speed drifts between runs measured one after the
 * other: fresh processes every round and paired runs keep both out of the ratios. A control row
 * — a second bare proxy, the same code as the baseline — shows how far apart a run puts equals.
 * Reports figures and PASS/MISS against the targets; exits 0 unless something crashed.
 *
 * Environment: BENCH_SECONDS (each measured run, default 3), BENCH_WARMUP_SECONDS (2 per
 * target, every round), BENCH_CONNECTIONS (50), BENCH_ROUNDS (5; ratios are taken within a round and their
 * median judged, and the table shows each target's median run by req/s), BENCH_LOADER (wrk or
 * autocannon), BENCH_PIN=0 (no CPU pinning), BENCH_ONLY (comma-separated words: only the targets
 * whose label contains one of them, plus the baselines they are judged against), BENCH_PROFILE=1
 * (every proxy process is CPU-profiled during its runs measured alone; the profiles go to
 * BENCH_PROFILE_DIR, default /tmp/oidc-sidecar-profile, and a summary is printed; figures taken
 * while profiling are a little lower).
 */

const PAGE = '/1k';
const PAGE_BYTES = 1024;
const BARE_PROXY = 'bare http-proxy';
/** The same code as the baseline, in a process of its own: how far apart a run puts two equals. */
const CONTROL = 'second bare http-proxy (control)';

interface Settings {
  seconds: number;
  warmupSeconds: number;
  connections: number;
  rounds: number;
  profileDir?: string;
  /** Words of BENCH_ONLY; empty: every target. */
  only: string[];
  loader: Loader;
}

/** The machine-client paths' throughput target against the bare proxy (their issue's). */
const MACHINE_CLIENT_RPS_RATIO = 0.85;

/** One row of the table. Add rows here (bearer token, client certificate, …). */
interface Target {
  label: string;
  headers?: Record<string, string>;
  /**
   * Starts the process serving the target for a round (a fresh one, for a proxy), or hands out
   * the one that serves every round (the portal).
   */
  start(): Promise<Served>;
  /** Label of the row this one is judged against. */
  baseline?: string;
  /** Its throughput target against the baseline, when not the default 0.90. */
  minRpsRatio?: number;
  /** CPU-profiled with BENCH_PROFILE=1. */
  profile?: boolean;
  /** Compared with its baseline for information, not judged against a target. */
  reference?: boolean;
}

/** A target's server for one round. */
interface Served {
  /** The page's URL. */
  url: string;
  server: ServerChild;
  /** Processes whose CPU use during a measured run is reported (the serving process first). */
  watch: WatchedProcess[];
  stop(): Promise<void>;
}

interface Deployment {
  targets: Target[];
  stop(): Promise<void>;
}

async function main(): Promise<void> {
  const settings = readSettings();
  const placement = await chooseCpuPlacement();
  console.log(describeSetup(settings, placement));
  const deployment = await startDeployment(placement);
  try {
    const targets = selectTargets(deployment.targets, settings.only);
    const { rounds, pairs } = await measureRounds(targets, settings);
    await printReport(rounds, pairs, settings);
  } finally {
    await deployment.stop();
  }
}

function readSettings(): Settings {
  const number = (name: string, fallback: number) => {
    const value = Number(process.env[name] ?? fallback);
    if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a non-negative number`);
    return value;
  };
  return {
    seconds: Math.max(1, Math.round(number('BENCH_SECONDS', 3))),
    warmupSeconds: Math.round(number('BENCH_WARMUP_SECONDS', 2)),
    connections: Math.max(1, number('BENCH_CONNECTIONS', 50)),
    rounds: Math.max(1, Math.round(number('BENCH_ROUNDS', 5))),
    profileDir: process.env.BENCH_PROFILE === '1' ? (process.env.BENCH_PROFILE_DIR ?? '/tmp/oidc-sidecar-profile') : undefined,
    only: (process.env.BENCH_ONLY ?? '').split(',').map((word) => word.trim()).filter(Boolean),
    loader: chooseLoader(process.env.BENCH_LOADER),
  };
}

function chooseLoader(wanted: string | undefined): Loader {
  if (wanted === 'wrk' || wanted === 'autocannon') return wanted;
  if (wanted) throw new Error('BENCH_LOADER must be wrk or autocannon');
  const onPath = (process.env.PATH ?? '').split(delimiter).some((dir) => dir && existsSync(join(dir, 'wrk')));
  return onPath ? 'wrk' : 'autocannon';
}

function describeSetup(settings: Settings, placement: CpuPlacement | undefined): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const pinning = placement
    ? `proxies pinned to CPU ${placement.proxies}, load generator, portal and Redis to CPU ${placement.others}`
    : 'nothing pinned to a CPU (one CPU, no taskset, or BENCH_PIN=0)';
  return (
    `node ${process.version}, ${os.cpus().length} × ${cpu}; GET ${PAGE} (${PAGE_BYTES} bytes), ` +
    `${settings.loader} with ${settings.connections} connections; ${settings.rounds} round(s), each: fresh proxies, ` +
    `${settings.warmupSeconds} s warm-up and ${settings.seconds} s measured per target alone, ${settings.seconds} s per pair; ${pinning}`
  );
}

interface Stoppable {
  stop(): Promise<void>;
}

/**
 * The portal in a child process, started once. The IdP, Redis and an in-process replica (used only
 * to sign in) come from the test stack; the measured sidecars are further replicas, each in its
 * own process, sharing the stack's configuration, Redis and secret.
 */
async function startDeployment(placement: CpuPlacement | undefined): Promise<Deployment> {
  const started: Stoppable[] = [];
  const stop = async () => {
    for (const part of started.reverse()) await part.stop().catch((error: unknown) => console.error('stopping failed:', error));
  };
  const keep = <T extends Stoppable>(part: T): T => (started.push(part), part);
  try {
    const portal = keep(await startServerChild('./portal-process.ts', {}));
    const redis = keep(await startRedis());
    const machineClient = keep(await prepareMachineClient(PAGE));
    const stack = keep(await startStack({ config: { session: { store: 'redis' }, redis: { url: redis.url }, upstream: { url: portal.url }, ...machineClient.config } }));
    const { cookieHeader } = await signIn(stack, { path: PAGE });
    const machineHeaders = {
      certificate: { 'x-clientcertificate-token': machineClient.certificateToken },
      bearer: { authorization: `Bearer ${await machineClient.bearerToken(stack.sidecar.url)}` },
    };
    const addHeaders = await headersAddedBy(stack.sidecar.url, { cookie: cookieHeader });
    const watched = { portal: { name: 'portal', pid: portal.pid }, redisServer: await findRedisServer(redis.port) };
    const startProxy = (name: string, script: string, input: unknown, alsoWatch: WatchedProcess[] = []) => async (): Promise<Served> => {
      const server = await startServerChild(script, input, placement?.proxies);
      return { url: server.url + PAGE, server, watch: [{ name, pid: server.pid }, watched.portal, ...alsoWatch], stop: () => server.stop() };
    };
    const servers = {
      portal: async (): Promise<Served> => ({ url: portal.url + PAGE, server: portal, watch: [watched.portal], stop: async () => {} }),
      bareProxy: startProxy('proxy', './bare-proxy-process.ts', { target: portal.url }),
      control: startProxy('proxy', './bare-proxy-process.ts', { target: portal.url }),
      bareProxyAddingHeaders: startProxy('proxy', './bare-proxy-process.ts', { target: portal.url, addHeaders }),
      sidecar: startProxy('sidecar', './sidecar-process.ts', stack.config, watched.redisServer),
    };
    return { targets: benchTargets(servers, { cookie: cookieHeader }, machineHeaders), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

type StartServer = () => Promise<Served>;

function benchTargets(
  servers: { portal: StartServer; bareProxy: StartServer; control: StartServer; bareProxyAddingHeaders: StartServer; sidecar: StartServer },
  // The browser's request is the same whichever proxy is in front of the portal: cookie included.
  browserHeaders: Record<string, string>,
  machineHeaders: { certificate: Record<string, string>; bearer: Record<string, string> },
): Target[] {
  const throughSidecar = (label: string, headers: Record<string, string>, minRpsRatio?: number): Target => ({
    label,
    minRpsRatio,
    headers,
    start: servers.sidecar,
    baseline: BARE_PROXY,
    profile: true,
  });
  return [
    { label: 'portal (direct)', start: servers.portal },
    { label: BARE_PROXY, headers: browserHeaders, start: servers.bareProxy, profile: true },
    { label: CONTROL, headers: browserHeaders, start: servers.control, baseline: BARE_PROXY, reference: true },
    {
      label: 'bare http-proxy adding the same headers (reference)',
      headers: browserHeaders,
      start: servers.bareProxyAddingHeaders,
      baseline: BARE_PROXY,
      reference: true,
    },
    throughSidecar('sidecar (Redis session)', browserHeaders),
    throughSidecar('sidecar (client-certificate token)', machineHeaders.certificate, MACHINE_CLIENT_RPS_RATIO),
    throughSidecar('sidecar (sidecar bearer token)', machineHeaders.bearer, MACHINE_CLIENT_RPS_RATIO),
  ];
}

/**
 * The headers the sidecar adds to a request (identity, X-Auth-Method, X-Request-Id, X-Forwarded-*),
 * as the portal's `/echo` received them: the reference row's proxy adds the same.
 */
async function headersAddedBy(sidecarUrl: string, headers: Record<string, string>): Promise<Record<string, string>> {
  const answer = await request(sidecarUrl + '/echo', { headers: { ...headers, accept: 'application/json' } });
  if (answer.status !== 200) throw new Error(`${sidecarUrl}/echo answered ${answer.status}`);
  const received = (JSON.parse(answer.body) as { headers: Record<string, string> }).headers;
  return Object.fromEntries(Object.entries(received).filter(([name]) => name.startsWith('x-')));
}

/** The targets named by BENCH_ONLY, the baselines they are judged against and the control, in table order. */
function selectTargets(targets: Target[], only: string[]): Target[] {
  if (only.length === 0) return targets;
  const chosen = targets.filter((target) => target.label === CONTROL || only.some((word) => target.label.includes(word)));
  const baselines = new Set(chosen.map((target) => target.baseline));
  return targets.filter((target) => chosen.includes(target) || baselines.has(target.label));
}

/** A target must answer the page itself (not a redirect or an error) before it is measured. */
async function preflight(target: Target, served: Served): Promise<void> {
  const answer = await request(served.url, { headers: target.headers });
  if (answer.status !== 200 || Buffer.byteLength(answer.body) !== PAGE_BYTES) {
    throw new Error(`${target.label}: ${served.url} answered ${answer.status} with ${Buffer.byteLength(answer.body)} bytes instead of the ${PAGE_BYTES}-byte page`);
  }
}

/**
 * The rounds: per round, each target's server started (afresh, for a proxy) and warmed up, every
 * target measured alone — the order alternating between rounds (ABBA…), so that a machine slowing
 * down or speeding up meanwhile weighs on both sides of a comparison — then every row with a
 * baseline loaded together with it. Returns each round's measurements and each row's paired runs.
 */
async function measureRounds(targets: Target[], settings: Settings): Promise<{ rounds: Measurement[][]; pairs: Map<string, PairedRun[]> }> {
  const rounds: Measurement[][] = [];
  const pairs = new Map<string, PairedRun[]>();
  for (let round = 1; round <= settings.rounds; round++) {
    const served = await startRound(targets, settings);
    try {
      const order = round % 2 === 1 ? targets : [...targets].reverse();
      const byTarget = new Map<Target, Measurement>();
      for (const target of order) {
        const measurement = await measure(target, served.get(target)!, settings, round);
        const { result, cpuPercent } = measurement;
        console.log(`round ${round}: ${target.label}: ${result.requestsPerSecond.toFixed(0)} req/s, p99 ${result.p99} ms, ${cpuPerRequest(result, cpuPercent)} CPU µs/req`);
        byTarget.set(target, measurement);
      }
      rounds.push(targets.map((target) => byTarget.get(target)!));
      for (const target of targets) {
        const baseline = targets.find((candidate) => candidate.label === target.baseline);
        if (!baseline) continue;
        const run = await measurePair([served.get(target)!, served.get(baseline)!], target.headers, settings);
        console.log(`round ${round}: ${target.label} together with ${baseline.label}: ${describePair(run)}`);
        pairs.set(target.label, [...(pairs.get(target.label) ?? []), run]);
      }
    } finally {
      for (const server of new Set(served.values())) await server.stop();
    }
  }
  return { rounds, pairs };
}

/**
 * Every target's server for a round — targets with the same `start` share one process (the
 * sidecar's rows) — each target checked and warmed up alone (JIT, caches and start-up garbage,
 * not figures).
 */
async function startRound(targets: Target[], settings: Settings): Promise<Map<Target, Served>> {
  const byStart = new Map<StartServer, Served>();
  try {
    for (const { start } of targets) if (!byStart.has(start)) byStart.set(start, await start());
    const served = new Map(targets.map((target) => [target, byStart.get(target.start)!]));
    for (const [target, server] of served) {
      await preflight(target, server);
      if (settings.warmupSeconds > 0) await load(server.url, target.headers, settings, settings.warmupSeconds);
    }
    return served;
  } catch (error) {
    for (const server of byStart.values()) await server.stop();
    throw error;
  }
}

/** One run of a target alone (CPU-profiled when asked). */
async function measure(target: Target, served: Served, settings: Settings, round: number): Promise<Measurement> {
  const profileFile = settings.profileDir && target.profile ? `${settings.profileDir}/${slug(target.label)}.round${round}.cpuprofile` : undefined;
  if (profileFile) await served.server.startProfile();
  const cpu = await startCpuMeter(served.watch);
  const result = await load(served.url, target.headers, settings, settings.seconds);
  const cpuPercent = await cpu();
  if (profileFile) await served.server.stopProfile(profileFile);
  const memory = await memoryOf(served.server.pid);
  const { label, baseline, minRpsRatio, reference } = target;
  return { label, result, memory, cpuPercent, baseline, minRpsRatio, reference, profileFile };
}

/**
 * A row and its baseline loaded at the same moment, both proxies on the proxies' CPU: whatever the
 * machine does meanwhile weighs on both alike, and their CPU time per request over the same window
 * gives what each sustains on one core. Both get the row's request.
 */
async function measurePair([mine, baseline]: [Served, Served], headers: Record<string, string> | undefined, settings: Settings): Promise<PairedRun> {
  const cpu = await startCpuMeter([
    { name: 'mine', pid: mine.server.pid },
    { name: 'baseline', pid: baseline.server.pid },
  ]);
  const [ours, theirs] = (await loadTogether([mine.url, baseline.url], headers, settings, settings.seconds)) as [LoadResult, LoadResult];
  const percent = await cpu();
  const side = (result: LoadResult, cpuPercent = NaN): PairedSide => ({ requests: result.requests, failed: result.errors + result.timeouts + result.non2xx, cpuPercent });
  return { mine: side(ours, percent.mine), baseline: side(theirs, percent.baseline) };
}

function describePair(run: PairedRun): string {
  const failed = run.mine.failed + run.baseline.failed;
  const warning = failed > 0 ? ` WARNING: ${failed} requests failed` : '';
  return `${run.mine.requests} and ${run.baseline.requests} requests, req/s on one core ${capacityRatio(run).toFixed(3)}${warning}`;
}

async function load(url: string, headers: Record<string, string> | undefined, settings: Settings, seconds: number): Promise<LoadResult> {
  return (await loadTogether([url], headers, settings, seconds))[0]!;
}

/** Loads every URL for `seconds`, all from one load-generator process and starting at the same moment. */
function loadTogether(urls: string[], headers: Record<string, string> | undefined, settings: Settings, seconds: number): Promise<LoadResult[]> {
  const inputs = urls.map((url): LoadInput => ({ url, headers: headers ?? {}, connections: settings.connections, seconds, loader: settings.loader }));
  return runInChild<LoadResult[]>('./load-process.ts', inputs, seconds * 1000 + 30_000);
}

/** Shows that metrics recording costs the hot path nothing measurable (issue: observability). */
async function printRecordingCost(measurements: Measurement[]): Promise<void> {
  const microseconds = await recordingMicrosecondsPerRequest();
  const session = measurements.find((measurement) => measurement.label.startsWith('sidecar (Redis session)'));
  const sidecarMicroseconds = session ? Number(cpuPerRequest(session.result, session.cpuPercent)) : NaN;
  const share = Number.isFinite(sidecarMicroseconds) ? ` = ${((100 * microseconds) / sidecarMicroseconds).toFixed(2)} % of the sidecar's CPU per request` : '';
  console.log(`metrics recording (measured alone): ${microseconds.toFixed(2)} CPU µs per proxied request${share}`);
}

function slug(label: string): string {
  return label.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

/** Per target, its median run by req/s (the table's row). */
function typicalRuns(rounds: Measurement[][]): Measurement[] {
  return rounds[0]!.map((_, column) => {
    const runs = rounds.map((round) => round[column]!).sort((a, b) => a.result.requestsPerSecond - b.result.requestsPerSecond);
    return runs[Math.floor(runs.length / 2)]!;
  });
}

async function printReport(rounds: Measurement[][], pairs: ReadonlyMap<string, PairedRun[]>, settings: Settings): Promise<void> {
  const measurements = typicalRuns(rounds);
  console.log();
  console.log(formatTable(measurements));
  console.log();
  for (const line of [...formatVerdicts(rounds, pairs), ...formatWarnings(measurements)]) console.log(line);
  await printRecordingCost(measurements);
  if (!settings.profileDir) return;
  for (const { label, profileFile, result } of measurements) {
    if (!profileFile) continue;
    const summary = await summarizeProfile(profileFile, { requests: result.requests });
    console.log(['', `CPU profile of ${label}: ${profileFile}`, ...summary].join('\n'));
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error('benchmark failed:', error);
    process.exit(1);
  },
);
