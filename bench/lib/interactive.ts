/**
 * Interactive single jobs, measured the same way against the platform and
 * against the direct peer (../peer/server.ts): one closed-loop level of
 * `POST /v1/jobs` through the same load generator (./http-load.ts), with the
 * CPU every process spent per job, Redis's commands per job, the batch sizes
 * the answers report and the envelope sizes the gateway's /metrics reports.
 * Only the HTTP API is used, so this keeps measuring whatever the platform
 * does inside.
 */
import os from 'node:os';
import type { Redis } from 'ioredis';
import { mainThreadWakeups, ownCpuMs, processCpuMs, redisDelta, sampleRedis, type RedisDelta } from './cpu.js';
import { closedLoop } from './http-load.js';
import { BENCH_KEY, percentile } from './platform.js';
import { table } from './report.js';

export interface LevelTarget {
  /** The POST /v1/jobs URL. */
  url: string;
  /** True for the platform: the API key and `Prefer: wait=30`. */
  platform: boolean;
  /** Server processes to charge CPU to, by name (e.g. gateway, worker; or peer). */
  pids: Record<string, number>;
  /** Redis to sample INFO from (the platform's); CPU and commands per job come from it. */
  redis?: Redis;
  /** The gateway's base URL, to scrape /metrics before and after the level. */
  metricsBase?: string;
}

export interface Level {
  clients: number;
  /** Answers that succeeded. */
  jobs: number;
  seconds: number;
  rate: number;
  latencies: number[];
  /** Up to 5 answers that did not succeed, and the counts. */
  failures: string[];
  failed: number;
  batchSizes: number[];
  queueMs: number[];
  inferenceMs: number[];
  /** CPU ms per job by process: the targets' pids, then 'Redis' (with a redis), then 'load generator'. */
  cpu: Record<string, number>;
  /** Wake-ups of each target process's event loop per job (mainThreadWakeups). */
  wakeups: Record<string, number>;
  redis?: RedisDelta;
  /** Envelope sizes the gateway reported during the level; null when it reports none. */
  envelopes?: HistogramDelta | null;
  /** Where the platform's answers spent their time, summed over jobs (ms): see Phases. Absent for the peer. */
  phases?: Phases;
}

/**
 * A platform job's time in four parts, from the load generator's send time
 * and the timestamps the answer carries (created_at, started_at,
 * completed_at; one machine, one clock, millisecond precision):
 * - in: the request's way to the gateway and its checks, until the job exists;
 * - queued: created until a worker took its envelope (= metrics.queue_ms);
 * - batch: taken until its micro-batch had run;
 * - back: the batch's end script, the message to the gateway and the answer.
 */
export interface Phases {
  in: number;
  queued: number;
  batch: number;
  back: number;
}

/** Mean ms per job of each phase. */
export const phaseMeans = (l: Level): Phases | undefined =>
  l.phases && { in: l.phases.in / l.jobs, queued: l.phases.queued / l.jobs, batch: l.phases.batch / l.jobs, back: l.phases.back / l.jobs };

interface Answer {
  status?: string;
  output?: unknown;
  created_at?: string;
  started_at?: string | null;
  completed_at?: string | null;
  metrics?: { queue_ms: number; inference_ms: number; batch_size: number } | null;
}

/** Request budgets, so a very fast run still ends. */
const maxRequests = (clients: number) => (clients === 1 ? 50_000 : 400_000);

/**
 * Seconds each system (peer and platform alike) runs at a level right before
 * that level is measured. The processes compile their hot paths as they run
 * (V8's tiers), and a path seen at 64 clients is not all of the one a lone
 * client takes: measured here, the platform's first 6 s at one client cost
 * twice the CPU per job of the 6 s after, and its first 6 s at 64 clients
 * served a fifth fewer jobs. A level is measured warm, the way a service
 * runs: BENCH_WARMUP_SECONDS sets it.
 */
export const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 5);

/** `runLevel` after WARMUP_SECONDS of the same load, whose figures are thrown away. */
export async function warmThenRun(target: LevelTarget, clients: number, seconds: number, bodies: readonly string[]): Promise<Level> {
  if (WARMUP_SECONDS > 0) await runLevel(target, clients, WARMUP_SECONDS, bodies);
  return runLevel(target, clients, seconds, bodies);
}

export async function runLevel(target: LevelTarget, clients: number, seconds: number, bodies: readonly string[]): Promise<Level> {
  const names = Object.keys(target.pids);
  const cpuOf = () => Object.fromEntries(names.map((n) => [n, processCpuMs(target.pids[n]!)]));
  const wakeupsOf = () => Object.fromEntries(names.map((n) => [n, mainThreadWakeups(target.pids[n]!)]));
  const metrics0 = target.metricsBase ? await scrapeHistogram(`${target.metricsBase}/metrics`, ENVELOPE_METRIC) : undefined;
  const redis0 = target.redis ? await sampleRedis(target.redis) : undefined;
  const cpu0 = cpuOf();
  const wakeups0 = wakeupsOf();
  const own0 = ownCpuMs();
  const run = await closedLoop({
    url: target.url,
    clients,
    seconds,
    maxRequests: maxRequests(clients),
    headers: target.platform ? { authorization: `Bearer ${BENCH_KEY}`, prefer: 'wait=30' } : {},
    bodies,
  });
  const own1 = ownCpuMs();
  const cpu1 = cpuOf();
  const wakeups1 = wakeupsOf();
  const redis = target.redis && redis0 ? redisDelta(redis0, await sampleRedis(target.redis)) : undefined;
  const metrics1 = target.metricsBase ? await scrapeHistogram(`${target.metricsBase}/metrics`, ENVELOPE_METRIC) : undefined;

  const level: Level = { clients, jobs: 0, seconds: run.seconds, rate: 0, latencies: [], failures: [], failed: run.socketErrors, batchSizes: [], queueMs: [], inferenceMs: [], cpu: {}, wakeups: {} };
  if (run.socketErrors) level.failures.push(`${run.socketErrors} socket errors`);
  for (const a of run.answers) {
    let job: Answer | undefined;
    try {
      job = a.status === 200 ? (JSON.parse(a.text) as Answer) : undefined;
    } catch {
      job = undefined;
    }
    if (!job || job.output == null || (job.status !== undefined && job.status !== 'succeeded')) {
      level.failed++;
      if (level.failures.length < 5) level.failures.push(`${a.status} ${a.text.slice(0, 160)}`);
      continue;
    }
    level.jobs++;
    level.latencies.push(a.ms);
    if (job.created_at && job.started_at && job.completed_at) {
      const created = Date.parse(job.created_at);
      const started = Date.parse(job.started_at);
      const completed = Date.parse(job.completed_at);
      level.phases ??= { in: 0, queued: 0, batch: 0, back: 0 };
      level.phases.in += created - a.sentAt;
      level.phases.queued += started - created;
      level.phases.batch += completed - started;
      level.phases.back += a.sentAt + a.ms - completed;
    }
    if (job.metrics) {
      level.batchSizes.push(job.metrics.batch_size);
      level.queueMs.push(job.metrics.queue_ms);
      level.inferenceMs.push(job.metrics.inference_ms);
    }
  }
  level.rate = level.jobs / run.seconds;
  const per = (ms: number) => ms / Math.max(1, level.jobs);
  for (const n of names) level.cpu[n] = per(cpu1[n]! - cpu0[n]!);
  for (const n of names) level.wakeups[n] = per(wakeups1[n]! - wakeups0[n]!);
  if (redis) {
    level.cpu.Redis = per(redis.cpuMs);
    level.redis = redis;
  }
  level.cpu['load generator'] = per(own1 - own0);
  if (metrics0 !== undefined && metrics1 !== undefined) level.envelopes = metrics0 && metrics1 ? diffHistogram(metrics0, metrics1) : null;
  return level;
}

/** What the platform's processes spent while nothing was sent to it: CPU as a share of one core, and Redis's commands. */
export interface Idle {
  seconds: number;
  /** Seconds from the last request to the start of the window. */
  settleSeconds: number;
  /** Percent of one core, by process: the targets' pids, then 'Redis'. */
  percent: Record<string, number>;
  redis: RedisDelta;
}

/**
 * The platform idle, in windows of `seconds` each starting `from` seconds
 * after the last request (in order). Timers, heartbeats, blocking reads that
 * time out and look again: what a platform that serves nothing costs.
 *
 * Going quiet has a cost of its own, paid once: V8's memory reducer, whose
 * timer looks every 8 s for a process that has stopped allocating, then
 * runs up to three mark-compacts to shrink its heap ("Mark-Compact
 * (reduce)" under --trace-gc), with helper threads: ~0.2 s of CPU for a
 * ~30 MB heap, once. Measured here: after a 3 s mlp load, the worker's at
 * 18 s after the last request and the gateway's at 27 s (the worker at 4%
 * of a core for those 5 s, then 0.2-0.6%); after 10 s at 64 clients, the
 * worker's at 35 s and the gateway's at 68 s. So any one window may or may
 * not hold it, which is most of why the idle figure swung from 1.06% to
 * 3.16% across runs; the foundation bench measures eight windows and
 * holds the target against their median.
 */
export async function measureIdle(pids: Record<string, number>, redis: Redis, windows: ReadonlyArray<{ from: number; seconds: number }>): Promise<Idle[]> {
  const quietSince = performance.now();
  const names = Object.keys(pids);
  const measured: Idle[] = [];
  for (const { from, seconds } of windows) {
    const wait = quietSince + from * 1000 - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const cpu0 = names.map((n) => processCpuMs(pids[n]!));
    const redis0 = await sampleRedis(redis);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const cpu1 = names.map((n) => processCpuMs(pids[n]!));
    const delta = redisDelta(redis0, await sampleRedis(redis));
    const percent: Record<string, number> = {};
    names.forEach((n, i) => (percent[n] = (100 * (cpu1[i]! - cpu0[i]!)) / (seconds * 1000)));
    percent.Redis = (100 * delta.cpuMs) / (seconds * 1000);
    measured.push({ seconds, settleSeconds: from, percent, redis: delta });
  }
  return measured;
}

export const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
export const p = (l: Level, q: number): number => percentile(l.latencies, q);
/** CPU ms per job summed over the named processes (all of them when none are named). */
export const cpuSum = (l: Level, names: readonly string[] = Object.keys(l.cpu)): number => names.reduce((s, n) => s + (l.cpu[n] ?? 0), 0);
export const commandsPerJob = (l: Level): number => (l.redis ? l.redis.calls / Math.max(1, l.jobs) : NaN);

/** "1: 3%, 2–3: 10%, 4–7: 40%, …": the share of values in each power-of-two range up to `max` (empty ranges at the top left out). */
export function powersOfTwo(values: readonly number[], max = Math.max(1, ...values)): string {
  if (values.length === 0) return 'none reported';
  const parts: Array<{ text: string; n: number }> = [];
  for (let lo = 1; lo <= max; lo *= 2) {
    const hi = Math.min(lo * 2 - 1, max);
    const n = values.filter((v) => v >= lo && v <= hi).length;
    parts.push({ text: `${hi > lo ? `${lo}–${hi}` : lo}: ${((100 * n) / values.length).toFixed(0)}%`, n });
  }
  while (parts.length > 1 && parts[parts.length - 1]!.n === 0) parts.pop(); // none larger
  return parts.map((x) => x.text).join(', ');
}

export const clientsText = (n: number): string => `${n} client${n === 1 ? '' : 's'}`;

/** "gateway 2.7, worker 2.8": each target process's event-loop wake-ups per job. */
export const describeWakeups = (l: Level): string =>
  Object.entries(l.wakeups)
    .map(([n, w]) => `${n} ${w.toFixed(2)}`)
    .join(', ');

/** CPU ms per job by process; "server" sums the `server` processes, "cores busy" is all of them × jobs/s. */
export function cpuTable(levels: readonly Level[], server: readonly string[], platform = false): string {
  const names = Object.keys(levels[0]?.cpu ?? {});
  return (
    `\n  CPU ms per job, by process (${os.availableParallelism()} cores here; "cores busy" = total CPU ms/job × jobs/s):\n` +
    table(
      ['clients', ...names, 'server', 'total', 'cores busy', ...(platform ? ['Redis cmds/job'] : [])],
      levels.map((l) => [
        String(l.clients),
        ...names.map((n) => l.cpu[n]!.toFixed(3)),
        cpuSum(l, server).toFixed(3),
        cpuSum(l).toFixed(3),
        ((cpuSum(l) * l.rate) / 1000).toFixed(2),
        ...(platform ? [commandsPerJob(l).toFixed(1)] : []),
      ]),
    )
  );
}

export function failures(levels: readonly Level[], who: string, log: (s: string) => void): void {
  for (const l of levels) if (l.failed) log(`  ${who} at ${clientsText(l.clients)}: ${l.failed} NOT SUCCEEDED: ${l.failures.join(' | ')}`);
}

// Prometheus histograms from a /metrics text.

/** Instances (jobs) per envelope: the gateway's histogram of how many jobs went into one BullMQ job. */
export const ENVELOPE_METRIC = 'infer_envelope_instances';

export interface Histogram {
  /** Cumulative counts by upper bound (`le`), summed over every label set; +Inf as Infinity. */
  buckets: Map<number, number>;
  sum: number;
  count: number;
}

export interface HistogramDelta {
  /** Per bucket (not cumulative), in order of upper bound. */
  buckets: Array<{ le: number; count: number }>;
  sum: number;
  count: number;
}

/** The histogram `name` from a Prometheus text exposition, or null when the text has none. */
export function parseHistogram(text: string, name: string): Histogram | null {
  const h: Histogram = { buckets: new Map(), sum: 0, count: 0 };
  let seen = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '_')) continue;
    const m = /^(\w+?)_(bucket|sum|count)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    seen = true;
    const value = Number(m[4]);
    if (m[2] === 'sum') h.sum += value;
    else if (m[2] === 'count') h.count += value;
    else {
      const le = /(?:^|,)le="([^"]+)"/.exec(m[3] ?? '')?.[1];
      if (le === undefined) continue;
      const bound = le === '+Inf' ? Infinity : Number(le);
      h.buckets.set(bound, (h.buckets.get(bound) ?? 0) + value);
    }
  }
  return seen ? h : null;
}

/** GET a /metrics URL and parse one histogram; null when the text has none (or the scrape fails). */
export async function scrapeHistogram(url: string, name: string): Promise<Histogram | null> {
  try {
    const res = await fetch(url);
    return res.ok ? parseHistogram(await res.text(), name) : null;
  } catch {
    return null;
  }
}

export function diffHistogram(before: Histogram, after: Histogram): HistogramDelta {
  const bounds = [...after.buckets.keys()].sort((a, b) => a - b);
  const buckets: HistogramDelta['buckets'] = [];
  let below = 0;
  for (const le of bounds) {
    const cumulative = after.buckets.get(le)! - (before.buckets.get(le) ?? 0);
    buckets.push({ le, count: cumulative - below });
    below = cumulative;
  }
  return { buckets, sum: after.sum - before.sum, count: after.count - before.count };
}

/** "2,345 envelopes, mean 12.3 jobs: 1: 2%, 2: 5%, 3–4: 10%, …" (share of envelopes per bucket), or why there is none. */
export function describeEnvelopes(h: HistogramDelta | null | undefined): string {
  if (h === undefined) return 'not scraped';
  if (h === null) return 'not reported by this gateway';
  if (h.count === 0) return 'none in this level';
  let lower = 0;
  const parts: string[] = [];
  for (const b of h.buckets) {
    const label = b.le === Infinity ? `>${lower}` : b.le - lower <= 1 ? `${b.le}` : `${lower + 1}–${b.le}`;
    if (b.count > 0) parts.push(`${label}: ${((100 * b.count) / h.count).toFixed(0)}%`);
    lower = b.le;
  }
  return `${Math.round(h.count).toLocaleString('en-US')} envelopes, mean ${(h.sum / h.count).toFixed(1)} jobs: ${parts.join(', ')}`;
}
