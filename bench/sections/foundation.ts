/**
 * The foundation figures: interactive single jobs at close to the cost of a
 * plain server. All in one run, on one throwaway Redis and one load
 * generator (../lib/http-load.ts), since the machine is shared and noisy and
 * the targets are ratios of figures measured side by side:
 *  1. raw ONNX Runtime in this process for mlp (default version) at batch
 *     sizes 1, 2, 4, … max_batch_size: what batching can buy;
 *  2. raw BullMQ's add rate and drain rate (../lib/bullmq-noop.ts), the
 *     ceilings of any design built on it, with Redis commands per job;
 *  3. the direct peer (../peer/server.ts): a plain node:http server running
 *     the model at batch 1 per request, what a team would write instead of
 *     adopting the platform, at 1 and 64 clients;
 *  4. the platform (the real gateway and worker processes), single jobs
 *     through POST /v1/jobs with `Prefer: wait=30`, at 1 and 64 clients:
 *     latency, CPU per job by process, Redis commands per job, the batch
 *     sizes the answers report and the envelope sizes the gateway's /metrics
 *     reports (histogram infer_envelope_instances, when it has one); then
 *     the same processes idle, in eight windows of 10 s from 15 s to 95 s
 *     after the load: the CPU a platform serving nothing costs. The target
 *     is held against the median window: V8's heap shrink after a load
 *     (see measureIdle) lands in one or two of them, once per process, at
 *     a time that varies from run to run;
 *  5. the two side by side, and the targets (reported, never enforced).
 * Only the HTTP API is used, so the section measures whatever the platform
 * does inside.
 */
import path from 'node:path';
import { ModelRepository, type ModelVersion } from '@infer/models';
import { measureBullmqAddDrain, type RawRate } from '../lib/bullmq-noop.js';
import { describeRedisPerJob } from '../lib/cpu.js';
import { startDirectPeer } from '../lib/direct-peer.js';
import { clientsText, commandsPerJob, cpuSum, cpuTable, describeEnvelopes, describeWakeups, failures, mean, p, phaseMeans, measureIdle, powersOfTwo, runLevel, warmThenRun, type Idle, type Level } from '../lib/interactive.js';
import { measureOrt, type OrtRate } from '../lib/ort-throughput.js';
import { ROOT, startBenchPlatform, startRedis, type Figure } from '../lib/platform.js';
import { fmt, table, verdict } from '../lib/report.js';

export interface FoundationOptions {
  /** Seconds per raw ORT batch size. @default 0.5 */
  ortSeconds?: number;
  /** Jobs added, then drained, by raw BullMQ. @default 10_000 */
  rawJobs?: number;
  /** Seconds per measured level (peer and platform alike). @default 8 */
  levelSeconds?: number;
  /** Seconds of each of the eight idle windows, after the levels. @default 10 */
  idleSeconds?: number;
}

const LEVELS = [1, 64] as const;
/** Idle windows after the levels: eight, from 15 s after the load (see measureIdle on the heap shrink in them). */
const IDLE_WINDOWS = 8;
const idleTotal = (w: Idle): number => Object.values(w.percent).reduce((a, b) => a + b, 0);
/** The platform's server side: the processes a deployment runs (the load generator is the clients'). */
const PLATFORM_SERVER = ['gateway', 'worker', 'Redis'];

type Fig = (name: string, value: number, unit: string, target?: { text: string; ok: boolean }) => void;

export async function runFoundationBench(log: (s: string) => void = console.log, options: FoundationOptions = {}): Promise<Figure[]> {
  const figures: Figure[] = [];
  const fig: Fig = (name, value, unit, target) => figures.push({ name, value, unit, ...(target ? { target: target.text, ok: target.ok } : {}) });
  const started = performance.now();
  const seconds = options.levelSeconds ?? 8;

  const repo = await ModelRepository.load(path.join(ROOT, 'models'), { only: ['mlp'] });
  try {
    const model = repo.resolve('mlp');
    const width = model.inputs[0]!.shape[0]!;
    const bodies = Array.from({ length: 512 }, () => JSON.stringify({ model: 'mlp', input: { [model.inputs[0]!.name]: Array.from({ length: width }, () => Math.random() * 2 - 1) } }));

    // 1. Raw ORT.
    const ortSeconds = options.ortSeconds ?? 0.5;
    log(`\n== foundation 1/5: raw ONNX Runtime, ${model.name} v${model.version} in this process, the worker's session options (${ortSeconds} s per batch size)`);
    const ort: OrtRate[] = [];
    for (let b = 1; ; b = Math.min(b * 2, model.maxBatchSize)) {
      ort.push(await measureOrt(model.session, { name: model.inputs[0]!.name, width }, b, ortSeconds));
      if (b === model.maxBatchSize) break;
    }
    log(table(['batch', 'runs', 'ms/run', 'rows/s', 'rows/s vs batch 1'], ort.map((r) => [String(r.batch), r.runs, r.msPerRun.toFixed(4), r.rowsPerSecond, `${(r.rowsPerSecond / ort[0]!.rowsPerSecond).toFixed(1)}×`])));
    for (const r of ort) fig(`raw ORT batch ${r.batch}: rows/s`, r.rowsPerSecond, 'rows/s');

    const redis = await startRedis();
    try {
      // 2. Raw BullMQ.
      log(`\n== foundation 2/5: raw BullMQ on the same Redis: ${fmt(options.rawJobs ?? 10_000, 0)} Queue.add with 64 in flight, then a Worker (concurrency 64, no-op processor) draining them`);
      log(`  Redis: ${redis.shared ? `shared ${redis.url} (others' traffic is in the Redis figures)` : `a throwaway redis-server (${redis.url}), used by every step below`}`);
      const raw = await measureBullmqAddDrain({ redisUrl: redis.url, admin: redis.admin, jobs: options.rawJobs ?? 10_000, inFlight: 64, concurrency: 64 });
      const rawRow = (name: string, r: RawRate) => [name, r.jobs, r.seconds.toFixed(2), r.rate, r.cpuMsPerJob.toFixed(3), (r.redis.cpuMs / r.jobs).toFixed(3), (r.redis.calls / r.jobs).toFixed(1)];
      log(table(['', 'jobs', 'seconds', 'jobs/s', 'bench CPU ms/job', 'Redis CPU ms/job', 'Redis cmds/job'], [rawRow('add (64 in flight)', raw.add), rawRow('drain (concurrency 64)', raw.drain)]));
      log(`  Redis per job, add: ${describeRedisPerJob(raw.add.redis, raw.add.jobs)}`);
      log(`  Redis per job, drain: ${describeRedisPerJob(raw.drain.redis, raw.drain.jobs)}`);
      for (const [name, r] of [['add', raw.add], ['drain', raw.drain]] as const) {
        fig(`raw BullMQ ${name}: throughput`, r.rate, 'jobs/s');
        fig(`raw BullMQ ${name}: Redis commands per job`, r.redis.calls / r.jobs, 'commands');
        fig(`raw BullMQ ${name}: Redis CPU per job`, r.redis.cpuMs / r.jobs, 'ms');
      }

      // 3. The direct peer.
      log(`\n== foundation 3/5: the direct peer (bench/peer/server.ts: node:http, ${model.name} v${model.version} at batch 1 per request), ${seconds} s per level`);
      const peer = await startDirectPeer({ modelFile: model.file, modelName: model.name });
      log(`  pid ${peer.process.pid}, ONNX Runtime session options: intraOpNumThreads ${peer.sessionOptions.intraOpNumThreads}, allow_spinning ${peer.sessionOptions.allow_spinning}`);
      const peerLevels: Level[] = [];
      try {
        const target = { url: peer.url, platform: false, pids: { peer: peer.process.pid! } };
        await runLevel(target, 64, 1.5, bodies); // first JIT on the busy path; then each level warms up at its own load
        for (const clients of LEVELS) peerLevels.push(await warmThenRun(target, clients, seconds, bodies));
      } finally {
        await peer.close();
      }
      log(latencyTable(peerLevels));
      log(cpuTable(peerLevels, ['peer']));
      failures(peerLevels, 'peer', log);

      // 4. The platform.
      log(`\n== foundation 4/5: the platform: real gateway + worker processes, POST /v1/jobs (${model.name}, random features) with Prefer: wait=30, ${seconds} s per level`);
      const t0 = performance.now();
      const platform = await startBenchPlatform(redis.url);
      log(`  gateway pid ${platform.gateway.pid}, worker pid ${platform.worker.pid}, prefix ${platform.prefix}; up and answering jobs in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      const levels: Level[] = [];
      let idle: Idle[] | undefined;
      try {
        const target = { url: `${platform.base}/v1/jobs`, platform: true, pids: { gateway: platform.gateway.pid!, worker: platform.worker.pid! }, redis: redis.admin, metricsBase: platform.base };
        await runLevel(target, 64, 1.5, bodies); // first JIT on the busy path; then each level warms up at its own load
        for (const clients of LEVELS) levels.push(await warmThenRun(target, clients, seconds, bodies));
        const idleSeconds = options.idleSeconds ?? 10;
        idle = await measureIdle(target.pids, redis.admin, Array.from({ length: IDLE_WINDOWS }, (_, i) => ({ from: 15 + i * idleSeconds, seconds: idleSeconds })));
      } finally {
        const closed = await platform.close();
        const exit = (e: typeof closed.gateway) => `${e.killed ? 'KILLED after' : `exit ${e.code ?? e.signal} in`} ${fmt(e.ms, 0)} ms`;
        log(`  stopped: gateway ${exit(closed.gateway)}, worker ${exit(closed.worker)} (SIGTERM); ${closed.keysDeleted} keys deleted under ${platform.prefix}`);
      }
      log(latencyTable(levels, true));
      log(cpuTable(levels, ['gateway', 'worker', 'Redis'], true));
      for (const l of levels) log(`  Redis per job at ${clientsText(l.clients)}: ${describeRedisPerJob(l.redis!, Math.max(1, l.jobs))}`);
      for (const l of [...peerLevels, ...levels]) log(`  event-loop wake-ups per job at ${clientsText(l.clients)} (voluntary context switches of each main thread): ${describeWakeups(l)}`);
      for (const l of levels) log(`  batch sizes at ${clientsText(l.clients)} (share of jobs): ${powersOfTwo(l.batchSizes, model.maxBatchSize)}`);
      for (const l of levels) log(`  envelope sizes at ${clientsText(l.clients)}: ${describeEnvelopes(l.envelopes)}`);
      failures(levels, 'platform', log);
      for (const window of idle ?? []) {
        const shares = Object.entries(window.percent).map(([n, pc]) => `${n} ${pc.toFixed(2)}%`).join(', ');
        log(`  idle ${window.settleSeconds}-${window.settleSeconds + window.seconds} s after the last level, share of one core: ${idleTotal(window).toFixed(2)}% (${shares}); Redis ${(window.redis.calls / window.seconds).toFixed(1)} commands/s: ${describeRedisPerJob(window.redis, window.seconds, 6)} a second`);
      }
      for (const l of levels) {
        const ph = phaseMeans(l);
        if (!ph) continue;
        log(
          `  where a job's mean ${mean(l.latencies).toFixed(2)} ms goes at ${clientsText(l.clients)}: in ${ph.in.toFixed(2)} (request → job created) + queued ${ph.queued.toFixed(2)} (→ a worker took its envelope) + ` +
            `batch ${ph.batch.toFixed(2)} (→ its micro-batch ran; inference ${mean(l.inferenceMs).toFixed(3)}) + back ${ph.back.toFixed(2)} (end script, message to the gateway, answer)`,
        );
      }
      const many = levels[levels.length - 1]!;
      log(`  raw BullMQ beside the platform at ${clientsText(many.clients)}: add ${fmt(raw.add.rate, 0)} jobs/s (${(raw.add.redis.calls / raw.add.jobs).toFixed(1)} Redis cmds/job), drain ${fmt(raw.drain.rate, 0)} jobs/s (${(raw.drain.redis.calls / raw.drain.jobs).toFixed(1)} cmds/job), add+drain ${(raw.add.redis.calls / raw.add.jobs + raw.drain.redis.calls / raw.drain.jobs).toFixed(1)} cmds/job; the platform ${fmt(many.rate, 0)} jobs/s, ${commandsPerJob(many).toFixed(1)} cmds/job`);

      // 5. Side by side, and the targets.
      reportTargets(peerLevels, levels, raw, model, idle, log, fig);
      for (const [who, ls] of [['peer', peerLevels], ['platform', levels]] as const) {
        for (const l of ls) {
          const c = `${who} ${clientsText(l.clients)}`;
          fig(`${c}: throughput`, l.rate, 'jobs/s');
          fig(`${c}: p50 latency`, p(l, 50), 'ms');
          fig(`${c}: p90 latency`, p(l, 90), 'ms');
          fig(`${c}: p99 latency`, p(l, 99), 'ms');
          for (const [name, ms] of Object.entries(l.cpu)) fig(`${c}: ${name} CPU per job`, ms, 'ms');
          if (l.redis) fig(`${c}: Redis commands per job`, commandsPerJob(l), 'commands');
          if (l.batchSizes.length) fig(`${c}: mean batch_size`, mean(l.batchSizes), 'instances');
          if (l.envelopes && l.envelopes.count > 0) fig(`${c}: mean envelope size`, l.envelopes.sum / l.envelopes.count, 'jobs');
          fig(`${c}: answers not succeeded`, l.failed, 'answers');
        }
      }
    } finally {
      await redis.stop();
    }
  } finally {
    await repo.close();
  }
  log(`\n  (foundation took ${((performance.now() - started) / 1000).toFixed(0)} s)`);
  return figures;
}

function latencyTable(levels: readonly Level[], platform = false): string {
  return table(
    ['clients', 'jobs', 'jobs/s', 'p50 ms', 'p90 ms', 'p99 ms', ...(platform ? ['mean batch', 'max batch', 'queue_ms mean', 'inference_ms mean'] : [])],
    levels.map((l) => [
      String(l.clients),
      fmt(l.jobs, 0),
      l.rate,
      p(l, 50).toFixed(2),
      p(l, 90).toFixed(2),
      p(l, 99).toFixed(2),
      ...(platform ? [mean(l.batchSizes).toFixed(2), String(Math.max(0, ...l.batchSizes)), mean(l.queueMs).toFixed(2), mean(l.inferenceMs).toFixed(3)] : []),
    ]),
  );
}

function reportTargets(peer: readonly Level[], platform: readonly Level[], raw: { add: RawRate; drain: RawRate }, model: ModelVersion, idle: Idle[] | undefined, log: (s: string) => void, fig: Fig): void {
  const at = (ls: readonly Level[], clients: number) => ls.find((l) => l.clients === clients)!;
  const [peer1, peer64, plat1, plat64] = [at(peer, 1), at(peer, 64), at(platform, 1), at(platform, 64)];

  log('\n== foundation 5/5: the platform beside the direct peer (same load generator, same run)');
  const row = (who: string, l: Level, server: readonly string[]) => [who, String(l.clients), l.rate, p(l, 50).toFixed(2), p(l, 90).toFixed(2), p(l, 99).toFixed(2), cpuSum(l, server).toFixed(3), l.cpu['load generator']!.toFixed(3)];
  log(
    table(
      ['', 'clients', 'jobs/s', 'p50 ms', 'p90 ms', 'p99 ms', 'server CPU ms/job', 'load gen CPU ms/job'],
      [row('direct peer', peer1, ['peer']), row('platform', plat1, PLATFORM_SERVER), row('direct peer', peer64, ['peer']), row('platform', plat64, PLATFORM_SERVER)],
    ),
  );
  log(`  raw BullMQ on the same Redis: add ${fmt(raw.add.rate, 0)} jobs/s, drain ${fmt(raw.drain.rate, 0)} jobs/s`);

  const rateRatio = plat64.rate / peer64.rate;
  const p50Ratio = p(plat64, 50) / p(peer64, 50);
  const cmds64 = commandsPerJob(plat64);
  const cmds1 = commandsPerJob(plat1);
  const p50one = p(plat1, 50);
  const bound = model.maxDelayMs + 5;
  const cpu1 = cpuSum(plat1, PLATFORM_SERVER);
  const cpu64 = cpuSum(plat64, PLATFORM_SERVER);
  const cpuRatio = cpu1 / cpu64;
  const targets: Array<[string, string, string, boolean, string, number, string]> = [
    [`platform / peer jobs/s at 64 clients (${fmt(plat64.rate, 0)} / ${fmt(peer64.rate, 0)})`, `${rateRatio.toFixed(2)}×`, '≥ 0.5×', rateRatio >= 0.5, 'ratio platform / peer jobs/s at 64 clients', rateRatio, '×'],
    [`platform / peer p50 at 64 clients (${p(plat64, 50).toFixed(2)} / ${p(peer64, 50).toFixed(2)} ms)`, `${p50Ratio.toFixed(2)}×`, '≤ 2×', p50Ratio <= 2, 'ratio platform / peer p50 at 64 clients', p50Ratio, '×'],
    ['Redis commands per job at 64 clients', cmds64.toFixed(1), '≤ 10', cmds64 <= 10, 'platform Redis commands per job at 64 clients', cmds64, 'commands'],
    ['Redis commands per job at 1 client', cmds1.toFixed(1), '≤ 25', cmds1 <= 25, 'platform Redis commands per job at 1 client', cmds1, 'commands'],
    [`p50 at 1 client vs max_delay_ms (${model.maxDelayMs}) + 5 ms`, `${p50one.toFixed(2)} ms`, `≤ ${bound} ms`, p50one <= bound, 'platform p50 latency at 1 client', p50one, 'ms'],
    [`server CPU ms/job (gateway+worker+Redis) at 1 client / at 64 (${cpu1.toFixed(3)} / ${cpu64.toFixed(3)})`, `${cpuRatio.toFixed(2)}×`, '≤ 2×', cpuRatio <= 2, 'ratio platform server CPU per job, 1 client / 64 clients', cpuRatio, '×'],
  ];
  let idleLine: string | undefined;
  if (idle && idle.length > 0) {
    const totals = idle.map(idleTotal).sort((a, b) => a - b);
    const median = totals[Math.floor(totals.length / 2)]!;
    const span = `${idle[0]!.settleSeconds}-${idle[idle.length - 1]!.settleSeconds + idle[idle.length - 1]!.seconds} s after the load`;
    targets.push([`idle platform (gateway+worker+Redis), share of one core, median of ${idle.length} windows of ${idle[0]!.seconds} s, ${span}`, `${median.toFixed(2)}%`, '≤ 2%', median <= 2, 'idle platform CPU, median 10 s window, share of one core', median, '%']);
    // Not targets: the mean (V8's heap shrinks included) and the highest window.
    const meanIdle = totals.reduce((a, b) => a + b, 0) / totals.length;
    idleLine = `  idle, ${span}: median window ${median.toFixed(2)}% of a core (the target's), mean ${meanIdle.toFixed(2)}% (each process's heap shrink after the load included), highest window ${totals[totals.length - 1]!.toFixed(2)}%`;
    fig(`idle platform CPU, mean over ${span}, share of one core`, meanIdle, '%');
    fig(`idle platform CPU, highest window, share of one core`, totals[totals.length - 1]!, '%');
  }
  log('\n== foundation targets');
  log(table(['target', 'measured', 'target', 'verdict'], targets.map(([text, measured, want, ok]) => [text, measured, want, verdict(ok)])));
  if (idleLine) log(idleLine);
  // For scale, not a target: the same ratio for the simplest server there is. A lone request costs it one
  // wake-up where 64 share theirs, so even it pays several times more CPU a job at one client.
  const peerCpu1 = cpuSum(peer1, ['peer']);
  const peerCpu64 = cpuSum(peer64, ['peer']);
  log(
    `  for scale, not a target: the direct peer's own CPU ms/job at 1 client / at 64 (${peerCpu1.toFixed(3)} / ${peerCpu64.toFixed(3)}) is ${(peerCpu1 / peerCpu64).toFixed(2)}× ` +
      `(event-loop wake-ups a lone job: ${describeWakeups(peer1)}; on the platform ${describeWakeups(plat1)}, and Redis's)`,
  );
  fig('ratio direct peer CPU per job, 1 client / 64 clients', peerCpu1 / peerCpu64, '×');
  for (const [, , want, ok, name, value, unit] of targets) fig(name, value, unit, { text: want.replace('×', ''), ok });
}
