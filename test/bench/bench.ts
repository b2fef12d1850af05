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
import { cpuPerRequest, formatTable, formatVerdicts, formatWarnings, type Measurement } from './report.js';

/**
 * `npm run bench`: the same 1 KiB portal page fetched directly, through a bare http-proxy and through
 * the sidecar (Redis-backed session, client-certificate token, sidecar bearer token), on loopback.
 * Each server and the load generator (wrk when installed, else autocannon) run in their own
 * process; each proxy has a CPU of its own (see CpuPlacement). Reports figures and PASS/MISS against
 * the targets; exits 0 unless something crashed.
 *
 * Environment: BENCH_SECONDS (measured, default 4), BENCH_WARMUP_SECONDS (2, first round only),
 * BENCH_CONNECTIONS (50), BENCH_ROUNDS (5; rounds alternate the order of the targets,
 * each ratio is taken within a round and its median over the rounds judged, and the table shows each
 * target's median run by req/s), BENCH_LOADER (wrk or autocannon), BENCH_PIN=0 (no CPU pinning),
 * BENCH_ONLY (comma-separated words: only the targets whose label contains one of them, plus the
 * baselines they are judged against), BENCH_PROFILE=1 (every proxy process is CPU-profiled during
 * its measured runs; the profiles go to BENCH_PROFILE_DIR, default /tmp/oidc-sidecar-profile, and a
 * summary is printed; figures taken while profiling are a little lower).
 */

const PAGE = '/1k';
const PAGE_BYTES = 1024;
const BARE_PROXY = 'bare http-proxy';

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
  url: string;
  headers?: Record<string, string>;
  /** The process serving the target, for its memory figures and profiles. */
  server: ServerChild;
  /** Label of the row this one is judged against. */
  baseline?: string;
  /** Its throughput target against the baseline, when not the default 0.90. */
  minRpsRatio?: number;
  /** CPU-profiled with BENCH_PROFILE=1. */
  profile?: boolean;
  /** Compared with its baseline for information, not judged against a target. */
  reference?: boolean;
  /** Processes whose CPU use during the measured run is reported (the serving process first). */
  watch: WatchedProcess[];
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
    for (const target of targets) await preflight(target);
    const rounds = await measureRounds(targets, settings);
    await printReport(rounds, settings);
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
    seconds: Math.max(1, number('BENCH_SECONDS', 4)),
    warmupSeconds: number('BENCH_WARMUP_SECONDS', 2),
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
    `${settings.loader} with ${settings.connections} connections, ${settings.warmupSeconds} s warm-up + ${settings.seconds} s measured per target, ` +
    `${settings.rounds} round(s); ${pinning}`
  );
}

interface Stoppable {
  stop(): Promise<void>;
}

/**
 * Portal, bare proxy and sidecar each in a child process. The IdP, Redis and an in-process replica
 * (used only to sign in) come from the test stack; the measured sidecar is a second replica in its
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
    const bareProxy = keep(await startServerChild('./bare-proxy-process.ts', { target: portal.url }, placement?.proxies));
    const redis = keep(await startRedis());
    const machineClient = keep(await prepareMachineClient(PAGE));
    const stack = keep(await startStack({ config: { session: { store: 'redis' }, redis: { url: redis.url }, upstream: { url: portal.url }, ...machineClient.config } }));
    const { cookieHeader } = await signIn(stack, { path: PAGE });
    const machineHeaders = {
      certificate: { 'x-clientcertificate-token': machineClient.certificateToken },
      bearer: { authorization: `Bearer ${await machineClient.bearerToken(stack.sidecar.url)}` },
    };
    const sidecar = keep(await startServerChild('./sidecar-process.ts', stack.config, placement?.proxies));
    const addHeaders = await headersAddedBy(sidecar.url, { cookie: cookieHeader });
    const bareProxyAddingHeaders = keep(await startServerChild('./bare-proxy-process.ts', { target: portal.url, addHeaders }, placement?.proxies));
    const redisServer = await findRedisServer(redis.port);
    return { targets: benchTargets({ portal, bareProxy, bareProxyAddingHeaders, sidecar, cookieHeader, machineHeaders, redisServer }), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

function benchTargets(parts: {
  portal: ServerChild;
  bareProxy: ServerChild;
  bareProxyAddingHeaders: ServerChild;
  sidecar: ServerChild;
  cookieHeader: string;
  machineHeaders: { certificate: Record<string, string>; bearer: Record<string, string> };
  redisServer: WatchedProcess[];
}): Target[] {
  const { portal, bareProxy, bareProxyAddingHeaders, sidecar, cookieHeader, machineHeaders, redisServer } = parts;
  const portalProcess = { name: 'portal', pid: portal.pid };
  // The browser's request is the same whichever proxy is in front of the portal: cookie included.
  const browserHeaders = { cookie: cookieHeader };
  const throughSidecar = (label: string, headers: Record<string, string>, minRpsRatio?: number): Target => ({
    label,
    minRpsRatio,
    url: sidecar.url + PAGE,
    headers,
    server: sidecar,
    baseline: BARE_PROXY,
    profile: true,
    watch: [{ name: 'sidecar', pid: sidecar.pid }, portalProcess, ...redisServer],
  });
  return [
    { label: 'portal (direct)', url: portal.url + PAGE, server: portal, watch: [portalProcess] },
    { label: BARE_PROXY, url: bareProxy.url + PAGE, headers: browserHeaders, server: bareProxy, profile: true, watch: [{ name: 'proxy', pid: bareProxy.pid }, portalProcess] },
    {
      label: 'bare http-proxy adding the same headers (reference)',
      url: bareProxyAddingHeaders.url + PAGE,
      headers: browserHeaders,
      server: bareProxyAddingHeaders,
      baseline: BARE_PROXY,
      reference: true,
      watch: [{ name: 'proxy', pid: bareProxyAddingHeaders.pid }, portalProcess],
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

/** The targets named by BENCH_ONLY and the baselines they are judged against, in table order. */
function selectTargets(targets: Target[], only: string[]): Target[] {
  if (only.length === 0) return targets;
  const chosen = targets.filter((target) => only.some((word) => target.label.includes(word)));
  const baselines = new Set(chosen.map((target) => target.baseline));
  return targets.filter((target) => chosen.includes(target) || baselines.has(target.label));
}

/** A target must answer the page itself (not a redirect or an error) before it is measured. */
async function preflight(target: Target): Promise<void> {
  const answer = await request(target.url, { headers: target.headers });
  if (answer.status !== 200 || Buffer.byteLength(answer.body) !== PAGE_BYTES) {
    throw new Error(`${target.label}: ${target.url} answered ${answer.status} with ${Buffer.byteLength(answer.body)} bytes instead of the ${PAGE_BYTES}-byte page`);
  }
}

/**
 * Every target once per round; rounds alternate the order (ABBA…) so that a machine slowing down
 * or speeding up meanwhile weighs on both sides of a comparison. Returns each round's measurements.
 */
async function measureRounds(targets: Target[], settings: Settings): Promise<Measurement[][]> {
  const rounds: Measurement[][] = [];
  for (let round = 1; round <= settings.rounds; round++) {
    const order = round % 2 === 1 ? targets : [...targets].reverse();
    const byTarget = new Map<Target, Measurement>();
    for (const target of order) {
      const measurement = await measure(target, settings, round);
      const { result, cpuPercent } = measurement;
      console.log(`round ${round}: ${target.label}: ${result.requestsPerSecond.toFixed(0)} req/s, p99 ${result.p99} ms, ${cpuPerRequest(result, cpuPercent)} CPU µs/req`);
      byTarget.set(target, measurement);
    }
    rounds.push(targets.map((target) => byTarget.get(target)!));
  }
  return rounds;
}

/** A warm-up run in the first round (processes stay up, so they stay warm), then the measured run (profiled when asked). */
async function measure(target: Target, settings: Settings, round: number): Promise<Measurement> {
  if (round === 1 && settings.warmupSeconds > 0) await load(target, settings, settings.warmupSeconds);
  const profileFile = settings.profileDir && target.profile ? `${settings.profileDir}/${slug(target.label)}.round${round}.cpuprofile` : undefined;
  if (profileFile) await target.server.startProfile();
  const cpu = await startCpuMeter(target.watch);
  const result = await load(target, settings, settings.seconds);
  const cpuPercent = await cpu();
  if (profileFile) await target.server.stopProfile(profileFile);
  const memory = await memoryOf(target.server.pid);
  const { label, baseline, minRpsRatio, reference } = target;
  return { label, result, memory, cpuPercent, baseline, minRpsRatio, reference, profileFile };
}

function load(target: Target, settings: Settings, seconds: number): Promise<LoadResult> {
  const input: LoadInput = { url: target.url, headers: target.headers ?? {}, connections: settings.connections, seconds, loader: settings.loader };
  return runInChild<LoadResult>('./load-process.ts', input, seconds * 1000 + 30_000);
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

async function printReport(rounds: Measurement[][], settings: Settings): Promise<void> {
  const measurements = typicalRuns(rounds);
  console.log();
  console.log(formatTable(measurements));
  console.log();
  for (const line of [...formatVerdicts(rounds), ...formatWarnings(measurements)]) console.log(line);
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
