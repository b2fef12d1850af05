import type { LoadResult } from './load-process.js';

/** The benchmark's table and its verdicts against the targets. */

export interface Memory {
  /** Resident set size after the measured run, MiB. */
  rssMiB: number;
  /** Peak resident set size of the process so far, MiB. */
  peakMiB: number;
}

export interface Measurement {
  label: string;
  result: LoadResult;
  memory?: Memory;
  /**
   * CPU use of the watched processes during the measured run, % of one core, by name; the serving
   * process first.
   */
  cpuPercent?: Record<string, number>;
  /** Label of the row this one is judged against. */
  baseline?: string;
  /** Its throughput target against the baseline, when not TARGETS.minRpsRatio. */
  minRpsRatio?: number;
  /** Compared with its baseline for information, not judged. */
  reference?: boolean;
  /** The CPU profile of the serving process during this run. */
  profileFile?: string;
}

/** Throughput at least this share of the baseline's, p99 latency at most this multiple of it. */
export const TARGETS = { minRpsRatio: 0.9, maxP99Ratio: 1.5 };

const COLUMNS = ['target', 'req/s', 'p50 ms', 'p99 ms', 'RSS MiB (peak)', 'requests', 'errors', 'non-2xx', 'CPU µs/req', 'CPU % of one core'];

export function formatTable(rows: Measurement[]): string {
  const cells = [COLUMNS, ...rows.map(rowCells)];
  const widths = COLUMNS.map((_, column) => Math.max(...cells.map((row) => row[column]!.length)));
  const last = COLUMNS.length - 1;
  const align = (cell: string, column: number) => (column === 0 || column === last ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!));
  const line = (row: string[]) => row.map(align).join('  ').trimEnd();
  return [line(cells[0]!), widths.map((width) => '-'.repeat(width)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

function rowCells({ label, result, memory, cpuPercent }: Measurement): string[] {
  return [
    label,
    result.requestsPerSecond.toFixed(0),
    String(result.p50),
    String(result.p99),
    memory ? `${memory.rssMiB.toFixed(0)} (${memory.peakMiB.toFixed(0)})` : '-',
    String(result.requests),
    String(result.errors + result.timeouts),
    String(result.non2xx),
    cpuPerRequest(result, cpuPercent),
    Object.entries(cpuPercent ?? {})
      .map(([name, percent]) => `${name} ${percent.toFixed(0)}`)
      .join(', '),
  ];
}

/**
 * CPU time the serving process spent per request, in microseconds: steadier than req/s on a busy
 * machine, where the share of CPU a process gets varies from run to run.
 */
export function cpuPerRequest(result: LoadResult, cpuPercent: Record<string, number> = {}): string {
  const serving = Object.values(cpuPercent)[0];
  if (serving === undefined || result.requestsPerSecond === 0) return '-';
  return ((serving / 100 / result.requestsPerSecond) * 1e6).toFixed(0);
}

/** One paired run: a row and its baseline loaded at the same moment, each measured over the same window. */
export interface PairedRun {
  mine: PairedSide;
  baseline: PairedSide;
}

export interface PairedSide {
  /** Requests completed (all good answers, else `failed` counts the others). */
  requests: number;
  failed: number;
  /** CPU use of the serving process over the window, % of one core. */
  cpuPercent: number;
}

/**
 * The requests per second a row sustains on one core, as a share of its baseline's: the inverse
 * ratio of their CPU time per request, both taken over the same window.
 */
export function capacityRatio(run: PairedRun): number {
  return run.baseline.cpuPercent / run.baseline.requests / (run.mine.cpuPercent / run.mine.requests);
}

/**
 * One line per row with a baseline: the ratios against it and PASS/MISS for each, medians over the
 * rounds. Throughput is judged on one core: the paired runs' `capacityRatio` (or, without CPU
 * figures, the requests/s measured alone). p99 latency is judged on the runs measured alone, each
 * ratio taken within its round.
 */
export function formatVerdicts(rounds: Measurement[][], pairs: ReadonlyMap<string, PairedRun[]>): string[] {
  const first = rounds[0] ?? [];
  return first.flatMap((row, column) => {
    const baselineColumn = first.findIndex((candidate) => candidate.label === row.baseline);
    if (baselineColumn === -1) return [];
    const alone = rounds.map((round) => [round[column]!, round[baselineColumn]!] as const);
    const aloneRpsRatio = median(alone.map(([mine, theirs]) => mine.result.requestsPerSecond / theirs.result.requestsPerSecond));
    const p99Ratio = median(alone.map(([mine, theirs]) => mine.result.p99 / theirs.result.p99));
    const oneCoreRatio = median((pairs.get(row.label) ?? []).map(capacityRatio));
    const judgedOnOneCore = Number.isFinite(oneCoreRatio);
    const rpsRatio = judgedOnOneCore ? oneCoreRatio : aloneRpsRatio;
    const minRpsRatio = row.minRpsRatio ?? TARGETS.minRpsRatio;
    const judged = (ratio: number, target: string, met: boolean) => `${ratio.toFixed(3)}${row.reference ? '' : ` (target ${target}) ${verdict(met)}`}`;
    return [
      `${row.label} / ${row.baseline} (medians of ${rounds.length} rounds): ` +
        `req/s ${judgedOnOneCore ? 'on one core' : 'measured alone'} ${judged(rpsRatio, `≥ ${minRpsRatio.toFixed(2)}`, rpsRatio >= minRpsRatio)}; ` +
        `p99 ${judged(p99Ratio, `≤ ${TARGETS.maxP99Ratio.toFixed(2)}`, p99Ratio <= TARGETS.maxP99Ratio)}` +
        (judgedOnOneCore ? `; req/s measured alone ${aloneRpsRatio.toFixed(3)}` : ''),
    ];
  });
}

function median(values: number[]): number {
  const sorted = values.filter((value) => !Number.isNaN(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const middle = sorted.length / 2;
  return sorted.length % 2 === 1 ? sorted[Math.floor(middle)]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Rows whose answers were not all good: their figures do not measure the real path. */
export function formatWarnings(rows: Measurement[]): string[] {
  return rows
    .filter(({ result }) => result.errors + result.timeouts + result.non2xx > 0)
    .map(({ label, result }) => `WARNING ${label}: ${result.errors} errors, ${result.timeouts} time-outs, ${result.non2xx} non-2xx answers`);
}

function verdict(met: boolean): string {
  return met ? 'PASS' : 'MISS';
}
