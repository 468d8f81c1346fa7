/**
 * The foundation figures, all in one run (the machine is shared and noisy,
 * so the targets are ratios of figures measured side by side):
 *  1. raw ONNX Runtime throughput in this process for mlp (default version)
 *     at batch sizes 1, 2, 4, … max_batch_size;
 *  2. raw BullMQ with a no-op processor on the same Redis, 64 producers in a
 *     closed loop (see ../lib/bullmq-noop.ts for exactly what it counts);
 *  3. the platform end to end: the real gateway and worker processes,
 *     single mlp jobs through POST /v1/jobs with `Prefer: wait`, from 1 and
 *     from 64 concurrent keep-alive clients: throughput, latency, the
 *     batch sizes the worker formed, and the CPU each process spent per job;
 *  4. the targets: e2e(64 clients) / BullMQ no-op ≥ 0.5, and p50 at 1 client
 *     ≤ max_delay_ms + 5 ms; and raw ORT at the batch sizes actually seen,
 *     so a reader can tell how much of the time inference is.
 */
import os from 'node:os';
import path from 'node:path';
import { ModelRepository, type ModelVersion } from '@infer/models';
import { measureBullmqNoop, type NoopResult } from '../lib/bullmq-noop.js';
import { describeRedisPerJob, ownCpuMs, processCpuMs, redisDelta, sampleRedis, type RedisDelta } from '../lib/cpu.js';
import { closedLoop } from '../lib/http-load.js';
import { measureOrt, type OrtRate } from '../lib/ort-throughput.js';
import { BENCH_KEY, ROOT, percentile, startBenchPlatform, startRedis, type BenchPlatform, type Figure } from '../lib/platform.js';
import { fmt, table, verdict } from '../lib/report.js';

export interface FoundationOptions {
  /** Seconds per raw ORT batch size. @default 1 */
  ortSeconds?: number;
  /** Seconds of the BullMQ no-op run. @default 4 */
  noopSeconds?: number;
  /** Seconds per e2e concurrency level. @default 5 */
  e2eSeconds?: number;
  /** Concurrent clients of the e2e levels, in order. @default [1, 64] */
  levels?: number[];
}

const NOOP_PRODUCERS = 64;
/** Request budgets, so a very fast run still ends: per level, by concurrency. */
const maxRequests = (clients: number) => (clients === 1 ? 20_000 : 60_000);

interface JobAnswer {
  status: string;
  metrics: { queue_ms: number; inference_ms: number; batch_size: number } | null;
}

interface Level {
  clients: number;
  jobs: number;
  seconds: number;
  rate: number;
  failures: string[];
  latencies: number[];
  batchSizes: number[];
  queueMs: number[];
  inferenceMs: number[];
  /** CPU ms per job: gateway, worker, Redis, and this process (the load generator). */
  cpu: { gateway: number; worker: number; redis: number; client: number };
  redis: RedisDelta;
}

export async function runFoundationBench(log: (s: string) => void = console.log, options: FoundationOptions = {}): Promise<Figure[]> {
  const figures: Figure[] = [];
  const fig = (name: string, value: number, unit: string, target?: { text: string; ok: boolean }) =>
    figures.push({ name, value, unit, ...(target ? { target: target.text, ok: target.ok } : {}) });
  const started = performance.now();

  const repo = await ModelRepository.load(path.join(ROOT, 'models'), { only: ['mlp'] });
  try {
    const model = repo.resolve('mlp');
    const input = { name: model.inputs[0]!.name, width: model.inputs[0]!.shape[0]! };

    // 1. Raw ORT.
    log(`\n== foundation 1/4: raw ONNX Runtime, ${model.name} v${model.version} in-process (${options.ortSeconds ?? 1} s per batch size)`);
    const sizes: number[] = [];
    for (let b = 1; b < model.maxBatchSize; b *= 2) sizes.push(b);
    sizes.push(model.maxBatchSize);
    const ort = new Map<number, OrtRate>();
    for (const b of sizes) ort.set(b, await measureOrt(model.session, input, b, options.ortSeconds ?? 1));
    const ort1 = ort.get(1)!;
    log(table(['batch', 'runs', 'ms/run', 'rows/s', 'rows/s vs batch 1'], [...ort.values()].map((r) => [String(r.batch), r.runs, r.msPerRun.toFixed(4), r.rowsPerSecond, `${(r.rowsPerSecond / ort1.rowsPerSecond).toFixed(1)}×`])));
    for (const r of ort.values()) {
      fig(`raw ORT batch ${r.batch}: rows/s`, r.rowsPerSecond, 'rows/s');
      fig(`raw ORT batch ${r.batch}: ms/run`, r.msPerRun, 'ms');
    }

    const redis = await startRedis();
    try {
      // 2. Raw BullMQ.
      log(`\n== foundation 2/4: raw BullMQ no-op, ${NOOP_PRODUCERS} producers each add → wait for completion, Worker concurrency ${NOOP_PRODUCERS} (${options.noopSeconds ?? 4} s)`);
      log(`  Redis: ${redis.shared ? `shared ${redis.url} (others' traffic is in the Redis figures)` : `a throwaway redis-server (${redis.url}), shared by this step and the next`}`);
      const noop = await measureBullmqNoop({ redisUrl: redis.url, admin: redis.admin, producers: NOOP_PRODUCERS, seconds: options.noopSeconds ?? 4, maxJobs: 200_000 });
      log(
        table(
          ['', 'jobs', 'seconds', 'jobs/s', 'bench CPU ms/job', 'Redis CPU ms/job', 'Redis cmds/job'],
          [['BullMQ no-op', noop.jobs, noop.seconds.toFixed(2), noop.rate, noop.cpuMsPerJob.toFixed(3), (noop.redis.cpuMs / noop.jobs).toFixed(3), (noop.redis.calls / noop.jobs).toFixed(1)]],
        ),
      );
      log(`  Redis per job: ${describeRedisPerJob(noop.redis, noop.jobs)}`);
      fig('raw BullMQ no-op: throughput (64 producers)', noop.rate, 'jobs/s');
      fig('raw BullMQ no-op: bench process CPU per job', noop.cpuMsPerJob, 'ms');
      fig('raw BullMQ no-op: Redis CPU per job', noop.redis.cpuMs / noop.jobs, 'ms');
      fig('raw BullMQ no-op: Redis commands per job', noop.redis.calls / noop.jobs, 'commands');

      // 3. The platform end to end.
      const levels = options.levels ?? [1, 64];
      log(`\n== foundation 3/4: platform end to end: real gateway + worker processes, POST /v1/jobs (mlp, random features) with Prefer: wait=30 (${options.e2eSeconds ?? 5} s per level)`);
      const t0 = performance.now();
      const platform = await startBenchPlatform(redis.url);
      log(`  gateway pid ${platform.gateway.pid}, worker pid ${platform.worker.pid}, prefix ${platform.prefix}; up and answering jobs in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      const results: Level[] = [];
      try {
        // Warm-up: JIT both processes on the batched path, then the single-job path.
        await runLevel(platform, redis.admin, 64, 1.5);
        await runLevel(platform, redis.admin, 1, 0.5);
        for (const clients of levels) results.push(await runLevel(platform, redis.admin, clients, options.e2eSeconds ?? 5));
      } finally {
        const closed = await platform.close();
        const exit = (e: typeof closed.gateway) => `${e.killed ? 'KILLED after' : `exit ${e.code ?? e.signal} in`} ${fmt(e.ms, 0)} ms`;
        log(`  stopped: gateway ${exit(closed.gateway)}, worker ${exit(closed.worker)} (SIGTERM); ${closed.keysDeleted} keys deleted under ${platform.prefix}`);
      }
      reportLevels(results, model, log, fig);

      // 4. Where the time goes, and the targets.
      const many = results.find((r) => r.clients === 64) ?? results[results.length - 1]!;
      const one = results.find((r) => r.clients === 1) ?? results[0]!;
      await reportOrtSeen(many, model, ort, input, log, fig);
      reportTargets(one, many, noop, model, log, fig);
    } finally {
      await redis.stop();
    }
  } finally {
    await repo.close();
  }
  log(`\n  (foundation took ${((performance.now() - started) / 1000).toFixed(0)} s)`);
  return figures;
}

async function runLevel(platform: BenchPlatform, admin: BenchRedisAdmin, clients: number, seconds: number): Promise<Level> {
  const bodies = Array.from({ length: 512 }, () => JSON.stringify({ model: 'mlp', input: { features: Array.from({ length: 64 }, () => Math.random() * 2 - 1) } }));
  const pids = { gateway: platform.gateway.pid!, worker: platform.worker.pid! };
  const cpu0 = { gateway: processCpuMs(pids.gateway), worker: processCpuMs(pids.worker), client: ownCpuMs() };
  const redis0 = await sampleRedis(admin);
  const run = await closedLoop({
    url: `${platform.base}/v1/jobs`,
    clients,
    seconds,
    maxRequests: maxRequests(clients),
    headers: { authorization: `Bearer ${BENCH_KEY}`, prefer: 'wait=30' },
    bodies,
  });
  const cpu1 = { gateway: processCpuMs(pids.gateway), worker: processCpuMs(pids.worker), client: ownCpuMs() };
  const redis = redisDelta(redis0, await sampleRedis(admin));
  const level: Level = {
    clients,
    jobs: 0,
    seconds: run.seconds,
    rate: 0,
    failures: run.socketErrors ? [`${run.socketErrors} socket errors`] : [],
    latencies: [],
    batchSizes: [],
    queueMs: [],
    inferenceMs: [],
    cpu: { gateway: 0, worker: 0, redis: 0, client: 0 },
    redis,
  };
  for (const a of run.answers) {
    const job = a.status === 200 ? (JSON.parse(a.text) as JobAnswer) : undefined;
    if (!job || job.status !== 'succeeded') {
      if (level.failures.length < 5) level.failures.push(`${a.status} ${a.text.slice(0, 160)}`);
      continue;
    }
    level.jobs++;
    level.latencies.push(a.ms);
    if (job.metrics) {
      level.batchSizes.push(job.metrics.batch_size);
      level.queueMs.push(job.metrics.queue_ms);
      level.inferenceMs.push(job.metrics.inference_ms);
    }
  }
  level.rate = level.jobs / run.seconds;
  const per = (ms: number) => ms / Math.max(1, level.jobs);
  level.cpu = { gateway: per(cpu1.gateway - cpu0.gateway), worker: per(cpu1.worker - cpu0.worker), redis: per(redis.cpuMs), client: per(cpu1.client - cpu0.client) };
  return level;
}

type BenchRedisAdmin = Parameters<typeof sampleRedis>[0];

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

function reportLevels(levels: Level[], model: ModelVersion, log: (s: string) => void, fig: (name: string, value: number, unit: string) => void): void {
  log(
    table(
      ['clients', 'jobs', 'jobs/s', 'p50 ms', 'p90 ms', 'p99 ms', 'mean batch', 'max batch', 'queue_ms mean', 'inference_ms mean'],
      levels.map((l) => [
        String(l.clients),
        l.jobs,
        l.rate,
        percentile(l.latencies, 50).toFixed(2),
        percentile(l.latencies, 90).toFixed(2),
        percentile(l.latencies, 99).toFixed(2),
        mean(l.batchSizes).toFixed(2),
        String(Math.max(0, ...l.batchSizes)),
        mean(l.queueMs).toFixed(2),
        mean(l.inferenceMs).toFixed(3),
      ]),
    ),
  );
  for (const l of levels) if (l.failures.length) log(`  ${l.clients} clients: NOT SUCCEEDED: ${l.failures.join(' | ')}`);
  const cores = os.availableParallelism();
  log(`\n  CPU ms per job, by process (this machine has ${cores} cores; "cores busy" = CPU ms/job × jobs/s):`);
  log(
    table(
      ['clients', 'gateway', 'worker', 'Redis', 'load generator', 'total', 'cores busy', 'Redis cmds/job'],
      levels.map((l) => {
        const total = l.cpu.gateway + l.cpu.worker + l.cpu.redis + l.cpu.client;
        return [String(l.clients), l.cpu.gateway.toFixed(3), l.cpu.worker.toFixed(3), l.cpu.redis.toFixed(3), l.cpu.client.toFixed(3), total.toFixed(3), ((total * l.rate) / 1000).toFixed(2), (l.redis.calls / Math.max(1, l.jobs)).toFixed(1)];
      }),
    ),
  );
  for (const l of levels) log(`  Redis per job at ${l.clients} client${l.clients > 1 ? 's' : ''}: ${describeRedisPerJob(l.redis, Math.max(1, l.jobs))}`);

  const histogramOf = levels.find((l) => l.clients === 64) ?? levels[levels.length - 1]!;
  const buckets: Array<[string, number, number]> = [];
  for (let lo = 1; lo <= model.maxBatchSize; lo *= 2) {
    const hi = Math.min(lo * 2 - 1, model.maxBatchSize);
    buckets.push([hi > lo ? `${lo}–${hi}` : `${lo}`, lo, hi]);
  }
  const n = Math.max(1, histogramOf.batchSizes.length);
  log(`\n  batch_size seen by jobs at ${histogramOf.clients} clients (share of jobs): ` + buckets.map(([label, lo, hi]) => `${label}: ${((100 * histogramOf.batchSizes.filter((b) => b >= lo && b <= hi).length) / n).toFixed(0)}%`).join(', '));

  for (const l of levels) {
    const c = `e2e ${l.clients} client${l.clients > 1 ? 's' : ''}`;
    fig(`${c}: throughput`, l.rate, 'jobs/s');
    fig(`${c}: p50 latency`, percentile(l.latencies, 50), 'ms');
    fig(`${c}: p90 latency`, percentile(l.latencies, 90), 'ms');
    fig(`${c}: p99 latency`, percentile(l.latencies, 99), 'ms');
    fig(`${c}: mean batch_size`, mean(l.batchSizes), 'instances');
    fig(`${c}: max batch_size`, Math.max(0, ...l.batchSizes), 'instances');
    fig(`${c}: mean queue_ms`, mean(l.queueMs), 'ms');
    fig(`${c}: mean inference_ms`, mean(l.inferenceMs), 'ms');
    fig(`${c}: gateway CPU per job`, l.cpu.gateway, 'ms');
    fig(`${c}: worker CPU per job`, l.cpu.worker, 'ms');
    fig(`${c}: Redis CPU per job`, l.cpu.redis, 'ms');
    fig(`${c}: load generator CPU per job`, l.cpu.client, 'ms');
    fig(`${c}: Redis commands per job`, l.redis.calls / Math.max(1, l.jobs), 'commands');
    fig(`${c}: jobs not succeeded`, l.failures.length, 'answers');
  }
}

/**
 * Raw ORT at the batch sizes the worker formed (measured now, with the
 * platform stopped), next to what the worker's metrics say its runs took:
 * how much of the worker's wall time inference was, and how much it would
 * be at raw speed.
 */
async function reportOrtSeen(
  l: Level,
  model: ModelVersion,
  ort: Map<number, OrtRate>,
  input: { name: string; width: number },
  log: (s: string) => void,
  fig: (name: string, value: number, unit: string) => void,
): Promise<void> {
  if (l.batchSizes.length === 0) return;
  const byFrequency = new Map<number, number>();
  for (const b of l.batchSizes) byFrequency.set(b, (byFrequency.get(b) ?? 0) + 1);
  const seen = new Set<number>([
    Math.round(percentile(l.batchSizes, 50)),
    Math.max(1, Math.round(mean(l.batchSizes))),
    Math.max(...l.batchSizes),
    ...[...byFrequency.entries()].sort((a, b) => b[1] - a[1]).slice(0, 2).map(([b]) => b),
  ]);
  for (const b of seen) if (!ort.has(b)) ort.set(b, await measureOrt(model.session, input, b, 0.5));
  const msAt = (b: number) => ort.get(b)?.msPerRun ?? interpolate(ort, b);
  log(`\n== foundation 4/4: where the time goes at ${l.clients} clients`);
  log(`  raw ORT at the batch sizes seen (measured just now, platform stopped) vs the worker's inference_ms for batches of that size:`);
  const rows = [...seen]
    .sort((a, b) => a - b)
    .map((b) => {
      const inWorker = l.inferenceMs.filter((_, i) => l.batchSizes[i] === b);
      return [String(b), `${((100 * (byFrequency.get(b) ?? 0)) / l.batchSizes.length).toFixed(1)}%`, ort.get(b)!.msPerRun.toFixed(4), ort.get(b)!.rowsPerSecond, inWorker.length ? mean(inWorker).toFixed(4) : '-'];
    });
  log(table(['batch', 'jobs in it', 'raw ms/run', 'raw rows/s', 'worker inference_ms'], rows));
  // Each job carries its batch's inference_ms and batch_size: summing inference_ms / batch_size over jobs sums over batches.
  const workerOrtMs = l.inferenceMs.reduce((s, ms, i) => s + ms / l.batchSizes[i]!, 0);
  const rawOrtMs = l.batchSizes.reduce((s, b) => s + msAt(b) / b, 0);
  const wallMs = l.seconds * 1000;
  const batches = l.batchSizes.reduce((s, b) => s + 1 / b, 0);
  log(`  ${fmt(batches, 0)} batches in ${l.seconds.toFixed(2)} s (${fmt(batches / l.seconds, 0)}/s); inference busy ${((100 * workerOrtMs) / wallMs).toFixed(1)}% of wall time in the worker (${((100 * rawOrtMs) / wallMs).toFixed(1)}% at raw ORT speed)`);
  const cpuPerJob = l.cpu.gateway + l.cpu.worker + l.cpu.redis + l.cpu.client;
  log(`  per job: ${(workerOrtMs / Math.max(1, l.jobs)).toFixed(4)} ms of inference (worker wall time) against ${cpuPerJob.toFixed(3)} CPU ms spent across the processes`);
  for (const b of seen) fig(`raw ORT at seen batch ${b}: ms/run`, ort.get(b)!.msPerRun, 'ms');
  fig(`e2e ${l.clients} clients: worker inference busy share of wall time`, workerOrtMs / wallMs, 'fraction');
  fig(`e2e ${l.clients} clients: raw-ORT busy share of wall time for the same batches`, rawOrtMs / wallMs, 'fraction');
}

function reportTargets(
  one: Level,
  many: Level,
  noop: NoopResult,
  model: ModelVersion,
  log: (s: string) => void,
  fig: (name: string, value: number, unit: string, target?: { text: string; ok: boolean }) => void,
): void {
  const ratio = many.rate / noop.rate;
  const p50 = percentile(one.latencies, 50);
  const bound = model.maxDelayMs + 5;
  const rows = [
    [`e2e ${many.clients} clients / raw BullMQ no-op (${fmt(many.rate, 0)} / ${fmt(noop.rate, 0)} jobs/s)`, `${ratio.toFixed(3)}×`, '≥ 0.5×', verdict(ratio >= 0.5)],
    [`p50 latency at ${one.clients} client vs max_delay_ms (${model.maxDelayMs}) + 5 ms`, `${p50.toFixed(2)} ms`, `≤ ${bound} ms`, verdict(p50 <= bound)],
  ];
  log('\n== foundation targets');
  log(table(['target', 'measured', 'target', 'verdict'], rows));
  const oneQueue = mean(one.queueMs);
  const oneInfer = mean(one.inferenceMs);
  log(`  at 1 client a job's mean ${mean(one.latencies).toFixed(2)} ms is ${oneQueue.toFixed(2)} ms queue_ms (submit → worker starts the batch) + ${oneInfer.toFixed(3)} ms inference + ${(mean(one.latencies) - oneQueue - oneInfer).toFixed(2)} ms the rest (HTTP, validation, record, enqueue, end, pub/sub, answer)`);
  fig('ratio e2e(64 clients) / raw BullMQ no-op', ratio, '×', { text: '≥ 0.5', ok: ratio >= 0.5 });
  fig('p50 latency at 1 client', p50, 'ms', { text: `≤ max_delay_ms + 5 = ${bound}`, ok: p50 <= bound });
}

function interpolate(ort: Map<number, OrtRate>, b: number): number {
  const sizes = [...ort.keys()].sort((x, y) => x - y);
  const lo = [...sizes].reverse().find((s) => s <= b) ?? sizes[0]!;
  const hi = sizes.find((s) => s >= b) ?? sizes[sizes.length - 1]!;
  const a = ort.get(lo)!.msPerRun;
  const c = ort.get(hi)!.msPerRun;
  return hi === lo ? a : a + ((c - a) * (b - lo)) / (hi - lo);
}
