import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { dirname } from 'node:path';

/**
 * CPU profiles of benchmark processes, taken in-process with the inspector (so exactly the measured
 * window is profiled), and a short text summary of where the time went.
 */

export type StopProfiling = (file: string) => Promise<void>;

/** Sampling interval in microseconds (V8's default is 1000). */
const SAMPLING_INTERVAL_US = 250;

export async function startProfiling(): Promise<StopProfiling> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: SAMPLING_INTERVAL_US });
  await session.post('Profiler.start');
  return async (file) => {
    const { profile } = await session.post('Profiler.stop');
    session.disconnect();
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, JSON.stringify(profile));
  };
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const NOT_BUSY = new Set(['(idle)', '(program)']);

/**
 * The busy share, the functions with the most self time, and the project's functions by inclusive
 * time, each as a share of the busy time and, given the number of requests served meanwhile, in
 * CPU microseconds per request.
 */
export async function summarizeProfile(file: string, options: { top?: number; requests?: number } = {}): Promise<string[]> {
  const top = options.top ?? 12;
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const { self, total } = selfTimes(profile);
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const busy = [...self].filter(([id]) => !NOT_BUSY.has(nodes.get(id)!.callFrame.functionName)).reduce((sum, [, time]) => sum + time, 0);
  const perRequest = (time: number) => (options.requests ? `  ${(time / options.requests).toFixed(1).padStart(6)} µs/req` : '');
  const share = (time: number) => `${((100 * time) / busy).toFixed(1).padStart(5)} %${perRequest(time)}`;
  const bySelf = sumBy(self, (id) => label(nodes.get(id)!));
  const byInclusive = inclusiveTimes(profile, self);
  return [
    `busy ${((100 * busy) / total).toFixed(0)} % of ${(total / 1e6).toFixed(1)} s${perRequest(busy)}; shares below are of the busy time`,
    'self time:',
    ...topEntries(bySelf, top, (name) => !NOT_BUSY.has(name)).map(([name, time]) => `  ${share(time)}  ${name}`),
    'inclusive time, project code (src/):',
    ...topEntries(byInclusive, top, (name) => name.includes(' src/')).map(([name, time]) => `  ${share(time)}  ${name}`),
  ];
}

/** Microseconds of samples per node, and the profile's total. */
function selfTimes(profile: CpuProfile): { self: Map<number, number>; total: number } {
  const self = new Map<number, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    total += delta;
    self.set(id, (self.get(id) ?? 0) + delta);
  });
  return { self, total };
}

/** Time spent in each function or anything it called (a recursive function counted once). */
function inclusiveTimes(profile: CpuProfile, self: Map<number, number>): Map<string, number> {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parents = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  const inclusive = new Map<string, number>();
  for (const [id, time] of self) {
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parents.get(at)) seen.add(label(nodes.get(at)!));
    for (const name of seen) inclusive.set(name, (inclusive.get(name) ?? 0) + time);
  }
  return inclusive;
}

function sumBy(times: Map<number, number>, key: (id: number) => string): Map<string, number> {
  const sums = new Map<string, number>();
  for (const [id, time] of times) sums.set(key(id), (sums.get(key(id)) ?? 0) + time);
  return sums;
}

function topEntries(times: Map<string, number>, count: number, include: (name: string) => boolean): Array<[string, number]> {
  return [...times].filter(([name]) => include(name)).sort((a, b) => b[1] - a[1]).slice(0, count);
}

/** `function file`, the file relative to the project or node_modules (`nm/`). */
function label(node: ProfileNode): string {
  const { functionName, url } = node.callFrame;
  const root = `file://${process.cwd()}/`;
  const file = url.startsWith(root) ? url.slice(root.length) : url.replace(/^.*\/node_modules\//, 'nm/');
  return file ? `${functionName || '(anonymous)'} ${file}` : functionName;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const file of process.argv.slice(2)) console.log([file, ...(await summarizeProfile(file, { top: 25 }))].join('\n'));
}
