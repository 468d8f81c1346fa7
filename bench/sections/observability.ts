/**
 * What observability costs: interactive mlp jobs (64 clients, `Prefer:
 * wait=30`, the foundation section's load generator) against three
 * platforms started side by side on one throwaway Redis, each the real
 * gateway and worker processes, started the same way
 * (bench/lib/app-main.ts) and differing only in
 *  - `off`: metrics off (createGateway/createWorker's `metrics: false`:
 *    nothing counted, no /metrics), no tracing;
 *  - `on`: metrics on, as every deployment runs (the default), no tracing;
 *  - `tracing`: metrics on and tracing on, exporting OTLP/HTTP protobuf to a
 *    stand-in collector in this process (../lib/otlp-sink.ts), which counts
 *    the spans it receives.
 * While they run, both platforms with metrics are scraped (gateway and
 * worker /metrics) every 5 s, Prometheus's interval in deploy/, since a
 * scrape is part of what metrics cost (the gateway's queue gauges read
 * Redis then). The modes are measured in interleaved rounds, the order
 * rotating each round, so the machine's drift falls on all three alike;
 * each mode reports its median round. Target: jobs/s with metrics on ≥ 0.95
 * × off, as the median of the rounds' own on/off ratios (reported, never
 * enforced); tracing's cost is reported only. Server CPU per job beside it
 * says the same with less noise.
 */
import { cpuSum, failures, runLevel, type Level, type LevelTarget } from '../lib/interactive.js';
import { startOtlpSink, type OtlpSinkStats } from '../lib/otlp-sink.js';
import { freePort, percentile, startBenchPlatform, startRedis, type BenchPlatform, type Figure } from '../lib/platform.js';
import { fmt, table, verdict } from '../lib/report.js';

export interface ObservabilityOptions {
  /** Interleaved rounds; each mode reports its median round. @default 12 */
  rounds?: number;
  /** Seconds per mode and round. @default 3 */
  levelSeconds?: number;
  /** Closed-loop clients. @default 64 */
  clients?: number;
  /** Seconds between scrapes of the platforms with metrics (deploy/prometheus: 5 s); 0: never scraped, the per-job cost alone. @default 5 */
  scrapeSeconds?: number;
}

interface Mode {
  key: 'off' | 'on' | 'tracing';
  label: string;
  metrics: boolean;
  tracing: boolean;
}

const MODES: readonly Mode[] = [
  { key: 'off', label: 'metrics off', metrics: false, tracing: false },
  { key: 'on', label: 'metrics on (default)', metrics: true, tracing: false },
  { key: 'tracing', label: 'metrics + tracing', metrics: true, tracing: true },
];

/** Server processes: what a deployment runs (the load generator, and the stand-in collector in it, are not). */
const SERVER = ['gateway', 'worker', 'Redis'];
/** The target: jobs/s with metrics on at least this share of jobs/s with them off. */
const TARGET = 0.95;

/** The middle value; the mean of the two middle ones for an even count. */
function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export async function runObservabilityBench(log: (s: string) => void = console.log, options: ObservabilityOptions = {}): Promise<Figure[]> {
  const figures: Figure[] = [];
  const fig = (name: string, value: number, unit: string, target?: { text: string; ok: boolean }) => figures.push({ name, value, unit, ...(target ? { target: target.text, ok: target.ok } : {}) });
  const started = performance.now();
  // Many short rounds rather than a few long ones: on this shared machine other people's work comes and goes
  // within seconds, and a mode's neighbours in time are what it is compared with.
  const rounds = options.rounds ?? 12;
  const seconds = options.levelSeconds ?? 3;
  const clients = options.clients ?? 64;
  const scrapeMs = (options.scrapeSeconds ?? 5) * 1000;
  const bodies = Array.from({ length: 512 }, () => JSON.stringify({ model: 'mlp', input: { features: Array.from({ length: 64 }, () => Math.random() * 2 - 1) } }));

  log(`\n== observability: mlp jobs from ${clients} clients (Prefer: wait=30) against three platforms side by side, metrics off / on / on + tracing; ${rounds} interleaved rounds of ${seconds} s per mode`);
  const redis = await startRedis();
  const sink = await startOtlpSink();
  const platforms = new Map<Mode['key'], { platform: BenchPlatform; workerMetrics: string }>();
  let scraper: NodeJS.Timeout | undefined;
  const scrapes = { ok: 0, failed: 0 };
  /** Jobs the tracing platform answered (warm-up and rounds), for spans per job. */
  let tracedJobs = 0;
  const levels = new Map<Mode['key'], Level[]>(MODES.map((m) => [m.key, []]));
  try {
    log(`  Redis: ${redis.shared ? `shared ${redis.url}` : `a throwaway redis-server (${redis.url})`}; OTLP sink (stand-in collector, in this process) at ${sink.endpoint}`);
    for (const mode of MODES) {
      const t0 = performance.now();
      const workerPort = await freePort();
      const platform = await startBenchPlatform(redis.url, {
        metrics: mode.metrics,
        // Set empty (unset) for the others, whatever this shell's environment says.
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: mode.tracing ? sink.endpoint : '', WORKER_METRICS_PORT: String(workerPort) },
      });
      platforms.set(mode.key, { platform, workerMetrics: `http://127.0.0.1:${workerPort}/metrics` });
      log(`  ${mode.key.padEnd(7)} ${mode.label}: gateway pid ${platform.gateway.pid}, worker pid ${platform.worker.pid}, prefix ${platform.prefix}; up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    const targetOf = (key: Mode['key']): LevelTarget => {
      const { platform } = platforms.get(key)!;
      return { url: `${platform.base}/v1/jobs`, platform: true, pids: { gateway: platform.gateway.pid!, worker: platform.worker.pid! }, redis: redis.admin };
    };

    // Prometheus, as deploy/ runs it: every process with metrics, every scrapeMs, whatever is under load.
    const scrapeAll = () => {
      for (const mode of MODES) {
        if (!mode.metrics) continue;
        const { platform, workerMetrics } = platforms.get(mode.key)!;
        for (const url of [`${platform.base}/metrics`, workerMetrics]) {
          fetch(url)
            .then(async (res) => {
              await res.text();
              if (res.ok) scrapes.ok++;
              else scrapes.failed++;
            })
            .catch(() => scrapes.failed++);
        }
      }
    };
    if (scrapeMs > 0) {
      scrapeAll();
      scraper = setInterval(scrapeAll, scrapeMs);
    }

    // Warm-up: JIT every process on the busy path.
    for (const mode of MODES) {
      const warm = await runLevel(targetOf(mode.key), clients, 2, bodies);
      if (mode.tracing) tracedJobs += warm.jobs + 1; // + the start-up probe
    }

    const perRound: Array<Record<Mode['key'], Level>> = [];
    for (let round = 0; round < rounds; round++) {
      const order = MODES.map((_, i) => MODES[(i + round) % MODES.length]!);
      const got = {} as Record<Mode['key'], Level>;
      for (const mode of order) {
        // A moment between levels, so one mode's tail (the last spans exported, a GC) does not fall in the next one's.
        await new Promise((r) => setTimeout(r, 500));
        const level = await runLevel(targetOf(mode.key), clients, seconds, bodies);
        got[mode.key] = level;
        levels.get(mode.key)!.push(level);
        if (mode.tracing) tracedJobs += level.jobs;
      }
      perRound.push(got);
      log(`  round ${round + 1}/${rounds} (${order.map((m) => m.key).join(', ')}): ${MODES.map((m) => `${m.key} ${fmt(got[m.key].rate, 0)} jobs/s`).join(', ')}`);
    }
  } finally {
    if (scraper) clearInterval(scraper);
    // Closing the tracing platform flushes the spans its processes still buffer to the sink.
    for (const [key, { platform }] of platforms) {
      const closed = await platform.close().catch((err: unknown) => {
        log(`  ${key}: close failed: ${(err as Error).message}`);
        return undefined;
      });
      if (closed && (closed.gateway.killed || closed.worker.killed)) log(`  ${key}: a process had to be killed on close`);
    }
    await sink.close();
    await redis.stop();
  }

  // Per mode: the median round.
  const summary = MODES.map((mode) => {
    const ls = levels.get(mode.key)!;
    const latencies = ls.flatMap((l) => l.latencies);
    return {
      mode,
      rate: median(ls.map((l) => l.rate)),
      rates: ls.map((l) => l.rate),
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      server: median(ls.map((l) => cpuSum(l, SERVER))),
      gateway: median(ls.map((l) => l.cpu.gateway!)),
      worker: median(ls.map((l) => l.cpu.worker!)),
      redis: median(ls.map((l) => l.cpu.Redis ?? NaN)),
      loadgen: median(ls.map((l) => l.cpu['load generator']!)),
      failed: ls.reduce((s, l) => s + l.failed, 0),
    };
  });
  const by = Object.fromEntries(summary.map((s) => [s.mode.key, s])) as Record<Mode['key'], (typeof summary)[number]>;
  log(
    '\n' +
      table(
        ['mode', 'jobs/s (median)', 'rounds', 'p50 ms', 'p99 ms', 'server CPU ms/job', 'gateway', 'worker', 'Redis', 'load gen'],
        summary.map((s) => [
          s.mode.label,
          s.rate,
          s.rates.map((r) => fmt(r, 0)).join(' '),
          s.p50.toFixed(2),
          s.p99.toFixed(2),
          s.server.toFixed(3),
          s.gateway.toFixed(3),
          s.worker.toFixed(3),
          s.redis.toFixed(3),
          s.loadgen.toFixed(3),
        ]),
      ),
  );
  log('  (p50/p99 over every round\'s answers; CPU ms per job: median round; "server" = gateway + worker + Redis)');
  for (const mode of MODES) failures(levels.get(mode.key)!, mode.key, log);

  // Ratios: of the medians (the target), and per round (paired, each round's modes measured within seconds of each other).
  const ratio = (a: Mode['key'], b: Mode['key']) => by[a].rate / by[b].rate;
  const paired = (a: Mode['key'], b: Mode['key']) => levelsOf(a).map((l, i) => l.rate / levelsOf(b)[i]!.rate);
  const levelsOf = (key: Mode['key']) => levels.get(key)!;
  // The target's figure: the median of the rounds' own on/off ratios. Each round measures the modes within seconds of each
  // other, so a ratio per round cancels the machine's drift; the ratio of the modes' medians does not (other people's work
  // here moves a level's jobs/s by ±30%), and swung from 0.8 to 1.1 over runs that had the same paired median.
  const onOff = median(paired('on', 'off'));
  /** Per round, a's figure over b's; the median of those. */
  const pairedOf = (a: Mode['key'], b: Mode['key'], f: (l: Level) => number) => median(levelsOf(a).map((l, i) => f(l) / f(levelsOf(b)[i]!)));
  const serverRatio = (a: Mode['key'], b: Mode['key']) => pairedOf(a, b, (l) => cpuSum(l, SERVER));
  const impliedRatio = (a: Mode['key'], b: Mode['key']) => 1 / pairedOf(a, b, (l) => cpuSum(l));
  const row = (name: string, a: Mode['key'], b: Mode['key'], target: string) => {
    const per = paired(a, b);
    return [
      name,
      `${ratio(a, b).toFixed(3)}×`,
      `${median(per).toFixed(3)}×`,
      per.map((x) => x.toFixed(2)).join(' '),
      `${serverRatio(a, b).toFixed(3)}×`,
      `${impliedRatio(a, b).toFixed(3)}×`,
      `${(by[a].p50 / by[b].p50).toFixed(2)}×`,
      target,
    ];
  };
  log(
    '\n' +
      table(
        ['', 'jobs/s ratio', 'paired median', 'per round', 'server CPU/job', 'implied by CPU/job', 'p50', 'target'],
        [
          row('metrics on / off', 'on', 'off', `paired ≥ ${TARGET}: ${verdict(onOff >= TARGET)}`),
          row('metrics + tracing / off', 'tracing', 'off', 'reported'),
          row('metrics + tracing / metrics on', 'tracing', 'on', 'reported'),
        ],
      ),
  );
  log('  jobs/s ratio: of the modes\' medians; paired median (the target\'s figure): the median of the rounds\' own ratios; server CPU/job: the');
  log('  median of the rounds\' own ratios; implied by CPU/job: the jobs/s ratio the total CPU per job (every process, load generator too)');
  log('  predicts on a machine the run keeps busy (median of the rounds\')');
  const cost = (a: Mode['key'], b: Mode['key']) => {
    const us = (serverRatio(a, b) - 1) * by[b].server * 1000;
    return `jobs/s ×${ratio(a, b).toFixed(3)} (paired ×${median(paired(a, b)).toFixed(3)}), server CPU ${us >= 0 ? '+' : '−'}${Math.abs(us).toFixed(0)} µs a job (${((serverRatio(a, b) - 1) * 100).toFixed(1)}%, paired)`;
  };
  log(`  metrics on against off: ${cost('on', 'off')}`);
  log(`  tracing on top of metrics: ${cost('tracing', 'on')}`);

  // What the tracing platform exported.
  const s = sink.stats();
  log(`\n  the stand-in collector received ${fmt(s.requests, 0)} export requests, ${(s.bytes / 1e6).toFixed(1)} MB, ${fmt(s.spans, 0)} spans for ≈ ${fmt(tracedJobs, 0)} jobs (${(s.spans / Math.max(1, tracedJobs)).toFixed(2)} spans and ${fmt(s.bytes / Math.max(1, tracedJobs), 0)} bytes a job)${s.rejected ? `; ${s.rejected} requests rejected` : ''}`);
  log(`  spans by name, per job: ${describeSpans(s, tracedJobs)}`);
  log(`  scrapes of the platforms with metrics: ${scrapeMs > 0 ? `every ${scrapeMs / 1000} s, ${scrapes.ok} answered${scrapes.failed ? `, ${scrapes.failed} FAILED` : ''}` : 'none (scrapeSeconds 0)'}`);

  for (const x of summary) {
    const c = x.mode.key;
    fig(`${c}: throughput (median of ${rounds})`, x.rate, 'jobs/s');
    fig(`${c}: p50 latency`, x.p50, 'ms');
    fig(`${c}: p99 latency`, x.p99, 'ms');
    fig(`${c}: server CPU per job`, x.server, 'ms');
    fig(`${c}: gateway CPU per job`, x.gateway, 'ms');
    fig(`${c}: worker CPU per job`, x.worker, 'ms');
    fig(`${c}: answers not succeeded`, x.failed, 'answers');
  }
  fig('ratio metrics on / off jobs/s, median of the rounds\' own', onOff, '×', { text: `≥ ${TARGET}`, ok: onOff >= TARGET });
  fig('ratio metrics on / off jobs/s, of the modes\' medians', ratio('on', 'off'), '×');
  fig('ratio metrics on / off server CPU per job', serverRatio('on', 'off'), '×');
  fig('ratio metrics on / off jobs/s implied by total CPU per job', impliedRatio('on', 'off'), '×');
  fig('ratio metrics + tracing / off jobs/s', ratio('tracing', 'off'), '×');
  fig('ratio metrics + tracing / metrics on jobs/s', ratio('tracing', 'on'), '×');
  fig('ratio metrics + tracing / metrics on server CPU per job', serverRatio('tracing', 'on'), '×');
  fig('ratio metrics + tracing / metrics on jobs/s implied by total CPU per job', impliedRatio('tracing', 'on'), '×');
  fig('tracing: spans exported per job', s.spans / Math.max(1, tracedJobs), 'spans');
  fig('tracing: bytes exported per job', s.bytes / Math.max(1, tracedJobs), 'bytes');

  log(`\n  (observability took ${((performance.now() - started) / 1000).toFixed(0)} s)`);
  return figures;
}

/** "POST /v1/jobs 1.00, enqueue 1.00, …": spans of each name per job, most frequent first. */
function describeSpans(s: OtlpSinkStats, jobs: number): string {
  if (s.spans === 0) return 'none received';
  return [...s.spansByName]
    .sort((a, b) => b[1] - a[1])
    .map(([name, n]) => `${name || '(unnamed)'} ${(n / Math.max(1, jobs)).toFixed(2)}`)
    .join(', ');
}
