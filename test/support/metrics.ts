import { request } from './http.js';

/** One sample line of the Prometheus text exposition format. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Every sample of a scrape, with a lookup that sums the samples matching some labels. */
export class Scrape {
  constructor(
    readonly samples: Sample[],
    readonly text: string,
  ) {}

  /** The sum of the samples named `name` whose labels include `labels` (0 when there is none). */
  value(name: string, labels: Record<string, string> = {}): number {
    return this.samples
      .filter((sample) => sample.name === name && Object.entries(labels).every(([label, value]) => sample.labels[label] === value))
      .reduce((sum, sample) => sum + sample.value, 0);
  }

  /** The distinct values one label takes among the samples named `name`. */
  labelValues(name: string, label: string): string[] {
    return [...new Set(this.samples.filter((sample) => sample.name === name).map((sample) => sample.labels[label]!))].sort();
  }
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL_PAIR = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/gy;
const ESCAPES: Record<string, string> = { '\\\\': '\\', '\\"': '"', '\\n': '\n' };

/** Parses the text exposition format (version 0.0.4); throws on a line it cannot read. */
export function parseExposition(text: string): Scrape {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = SAMPLE_LINE.exec(line);
    if (!match) throw new Error(`not an exposition sample line: ${line}`);
    samples.push({ name: match[1]!, labels: parseLabels(match[2] ?? '', line), value: parseValue(match[3]!) });
  }
  return new Scrape(samples, text);
}

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  LABEL_PAIR.lastIndex = 0;
  let consumed = 0;
  for (let pair = LABEL_PAIR.exec(text); pair; pair = LABEL_PAIR.exec(text)) {
    labels[pair[1]!] = pair[2]!.replace(/\\[\\"n]/g, (escape) => ESCAPES[escape]!);
    consumed = LABEL_PAIR.lastIndex;
  }
  if (consumed !== text.length) throw new Error(`unreadable labels: ${line}`);
  return labels;
}

function parseValue(text: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text.toLowerCase() === 'nan') return NaN;
  const value = Number(text);
  if (Number.isNaN(value)) throw new Error(`not a sample value: ${text}`);
  return value;
}

/** Fetches and parses `/metrics` of a metrics port, checking the content type. */
export async function scrape(metricsUrl: string): Promise<Scrape> {
  const answer = await request(metricsUrl + '/metrics');
  if (answer.status !== 200 || !String(answer.headers['content-type']).startsWith('text/plain; version=0.0.4')) {
    throw new Error(`/metrics answered ${answer.status} ${String(answer.headers['content-type'])}`);
  }
  return parseExposition(answer.body);
}
