import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import { promisify } from 'node:util';
import type { Memory } from './report.js';

/** What the benchmark reads about its processes from /proc (Linux; elsewhere the figures are left out). */

export interface WatchedProcess {
  name: string;
  pid: number;
}

/** The redis-server serving `port`, found by its process title (`redis-server 127.0.0.1:PORT`). */
export async function findRedisServer(port: number): Promise<WatchedProcess[]> {
  for (const entry of await readdir('/proc').catch(() => [])) {
    if (!/^\d+$/.test(entry)) continue;
    const title = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ');
    if (title.startsWith('redis-server ') && title.includes(`:${port}`)) return [{ name: 'redis-server', pid: Number(entry) }];
  }
  return [];
}

/**
 * Starts measuring the CPU time of `processes`; the returned function gives each one's use since,
 * in percent of one core (Linux /proc; USER_HZ is 100 on every Linux architecture).
 */
export async function startCpuMeter(processes: WatchedProcess[]): Promise<() => Promise<Record<string, number>>> {
  const startedAt = performance.now();
  const before = await Promise.all(processes.map(({ pid }) => cpuTicks(pid)));
  return async () => {
    const seconds = (performance.now() - startedAt) / 1000;
    const after = await Promise.all(processes.map(({ pid }) => cpuTicks(pid)));
    const percent: Record<string, number> = {};
    processes.forEach(({ name }, i) => {
      if (before[i] !== undefined && after[i] !== undefined) percent[name] = (after[i]! - before[i]!) / seconds;
    });
    return percent;
  };
}

/** User + system CPU time of a process in clock ticks (1/100 s), or undefined off Linux. */
async function cpuTicks(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (stat === undefined) return undefined;
  // Fields after the command name, which is in parentheses: state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** Current and peak RSS of a process, from /proc (Linux); undefined elsewhere. */
export async function memoryOf(pid: number): Promise<Memory | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
    return { rssMiB: kib('VmRSS') / 1024, peakMiB: kib('VmHWM') / 1024 };
  } catch {
    return undefined;
  }
}

/**
 * Where the benchmark's processes run, so that each proxy under test has one core of its own:
 * the proxies on CPU 0, everything else (load generator, portal, Redis, identity provider) on the
 * other CPUs. Undefined — nothing pinned — with one CPU, without `taskset`, or with BENCH_PIN=0.
 */
export interface CpuPlacement {
  proxies: string;
  others: string;
}

export async function chooseCpuPlacement(): Promise<CpuPlacement | undefined> {
  const cpus = os.availableParallelism();
  if (cpus < 2 || process.env.BENCH_PIN === '0') return undefined;
  const placement = { proxies: '0', others: cpus === 2 ? '1' : `1-${cpus - 1}` };
  try {
    await pin(process.pid, placement.others);
    return placement;
  } catch {
    return undefined;
  }
}

/** Confines a running process, every thread of it, to `cpus`. */
export async function pin(pid: number, cpus: string): Promise<void> {
  await promisify(execFile)('taskset', ['--all-tasks', '--cpu-list', '--pid', cpus, String(pid)]);
}
