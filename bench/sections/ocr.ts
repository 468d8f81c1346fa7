/**
 * A real model with real-sized requests: the shipped PP-OCR text-direction
 * classifier `ocr-cls` (input `x`, FP32 [3,48,192] per instance, output
 * `softmax_0.tmp_0`), each request one image as base64 (`{"datatype":"FP32",
 * "shape":[3,48,192],"b64":…}`, random values in [0,1)), at 32 clients:
 *  1. raw ONNX Runtime rows/s and CPU ms per row in this process at batch
 *     1, 4, 8, 16, with the worker's session options and with one intra-op
 *     thread: what batching can buy on this CPU, in time and in CPU;
 *  2. the direct peer (../peer/server.ts) serving ocr-cls at batch 1, once
 *     with ONNX Runtime's default intra-op threads and once with 1; the
 *     faster of the two is the baseline;
 *  3. the platform (gateway + a worker serving ocr-cls only), single jobs
 *     through POST /v1/jobs with `Prefer: wait=30`; then the same with two
 *     workers, each on one intra-op thread (the shipped config plus
 *     `intra_op_num_threads: 1`, in a copy of the repository): what
 *     "run more workers" buys on this machine;
 *  4. the two side by side, and the target: platform jobs/s ≥ 1.0 × the
 *     peer's (here batching has something to win, so the platform should
 *     at least match a server that cannot batch), held against the
 *     default platform (one worker, as `npm start` runs it); the two-worker
 *     figure is reported beside it.
 * Both see the same 64 prebuilt bodies from the same load generator, on
 * the same throwaway Redis, in the same run.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { ModelRepository } from '@infer/models';
import { describeRedisPerJob } from '../lib/cpu.js';
import { startDirectPeer } from '../lib/direct-peer.js';
import { commandsPerJob, cpuSum, cpuTable, describeEnvelopes, failures, mean, p, powersOfTwo, warmThenRun, type Level } from '../lib/interactive.js';
import { ROOT, startBenchPlatform, startRedis, type BenchRedis, type Figure } from '../lib/platform.js';
import { fmt, table, verdict } from '../lib/report.js';

export interface OcrOptions {
  /** Concurrent clients. @default 32 */
  clients?: number;
  /** Seconds of each measured level. @default 8 */
  seconds?: number;
  /** Seconds per raw ORT batch size (for each of the two sessions). @default 1 */
  ortSeconds?: number;
}

const MODEL = 'ocr-cls';
const BATCHES = [1, 4, 8, 16];
const BODIES = 64;
/**
 * The peer's intra-op thread settings, each measured. Which is faster depends
 * on the CPU: on one 2-core machine the default (a 2-thread pool) served 655
 * jobs/s against 647 for 1 thread; on another, 1 thread served 726-764
 * against 558-597 (a batch-1 run took 0.85 ms on one thread, 1.2-1.4 ms
 * handing work to a pool). Never hold the platform against the slower one.
 */
const PEER_THREADS: ReadonlyArray<number | 'default'> = ['default', 1];

interface PeerRun {
  threads: number | 'default';
  level: Level;
}

export async function runOcrBench(log: (s: string) => void = console.log, options: OcrOptions = {}): Promise<Figure[]> {
  const figures: Figure[] = [];
  const fig = (name: string, value: number, unit: string, target?: { text: string; ok: boolean }) =>
    figures.push({ name, value, unit, ...(target ? { target: target.text, ok: target.ok } : {}) });
  const started = performance.now();
  const clients = options.clients ?? 32;
  const seconds = options.seconds ?? 8;

  const repo = await ModelRepository.load(path.join(ROOT, 'models'), { only: [MODEL] });
  try {
    const model = repo.resolve(MODEL);
    const input = model.inputs[0]!;
    const shape = [3, 48, 192];
    const size = shape.reduce((a, b) => a * b, 1);

    // 1. Raw ORT: the worker's session, and one on a single intra-op thread (the peer's other setting).
    const ortSeconds = options.ortSeconds ?? 1;
    log(`\n== ocr 1/4: raw ONNX Runtime, ${model.name} v${model.version} in this process, ${input.name} [batch,${shape.join(',')}] (${ortSeconds} s per batch size): the worker's session options, then intra-op threads 1`);
    const single = await ort.InferenceSession.create(model.file, { graphOptimizationLevel: 'all', logSeverityLevel: 4, intraOpNumThreads: 1, extra: { session: { intra_op: { allow_spinning: '0' } } } });
    const rates: Array<{ threads: string; batch: number; runs: number; msPerRun: number; rowsPerSecond: number; cpuMsPerRow: number }> = [];
    try {
      for (const [threads, session] of [['worker', model.session], ['1', single]] as const) {
        for (const b of BATCHES) rates.push({ threads, ...(await measureOrtImages(session, input.name, shape, b, ortSeconds)) });
      }
    } finally {
      await single.release();
    }
    const batchOne = (threads: string) => rates.find((r) => r.threads === threads && r.batch === 1)!;
    log(table(
      ['intra-op threads', 'batch', 'runs', 'ms/run', 'rows/s', 'rows/s vs batch 1', 'CPU ms/row'],
      rates.map((r) => [r.threads === 'worker' ? "the worker's" : r.threads, String(r.batch), String(r.runs), r.msPerRun.toFixed(2), r.rowsPerSecond, `${(r.rowsPerSecond / batchOne(r.threads).rowsPerSecond).toFixed(2)}×`, r.cpuMsPerRow.toFixed(3)]),
    ));
    for (const r of rates) {
      const who = r.threads === 'worker' ? '' : `, intra-op threads ${r.threads}`;
      fig(`raw ORT batch ${r.batch}${who}: rows/s`, r.rowsPerSecond, 'rows/s');
      fig(`raw ORT batch ${r.batch}${who}: CPU per row`, r.cpuMsPerRow, 'ms');
    }

    const bodies = Array.from({ length: BODIES }, () =>
      JSON.stringify({ model: MODEL, input: { [input.name]: { datatype: 'FP32', shape, b64: Buffer.from(Float32Array.from({ length: size }, () => Math.random()).buffer).toString('base64') } } }),
    );
    log(`  requests: ${BODIES} distinct bodies of ${fmt(bodies[0]!.length / 1024, 0)} KiB (${fmt((size * 4) / 1024, 0)} KiB of FP32 as base64), built before the clock starts`);

    const redis = await startRedis();
    try {
      // 2. The direct peer, once per ONNX Runtime thread setting: the faster is the baseline.
      log(`\n== ocr 2/4: the direct peer (bench/peer/server.ts, ${model.name} at batch 1 per request), ${clients} clients, ${seconds} s, with intra-op threads ${PEER_THREADS.join(' and ')}: the faster is the baseline`);
      const peerRuns: PeerRun[] = [];
      for (const intraOpNumThreads of PEER_THREADS) {
        const peer = await startDirectPeer({ modelFile: model.file, modelName: model.name, intraOpNumThreads });
        log(`  pid ${peer.process.pid}, ONNX Runtime session options: intraOpNumThreads ${peer.sessionOptions.intraOpNumThreads}, allow_spinning ${peer.sessionOptions.allow_spinning}; base64 decoded ${peer.liftB64 ? "from the body's bytes" : 'after JSON.parse'}`);
        try {
          const target = { url: peer.url, platform: false, pids: { peer: peer.process.pid! } };
          peerRuns.push({ threads: intraOpNumThreads, level: await warmThenRun(target, clients, seconds, bodies) });
        } finally {
          await peer.close();
        }
      }
      const fastest = peerRuns.reduce((a, b) => (b.level.rate > a.level.rate ? b : a));
      const peerLevel = fastest.level;
      log(table(
        ['intra-op threads', 'jobs/s', 'p50 ms', 'p99 ms', 'peer CPU ms/job', ''],
        peerRuns.map((r) => [String(r.threads), r.level.rate, p(r.level, 50).toFixed(1), p(r.level, 99).toFixed(1), r.level.cpu.peer!.toFixed(3), r === fastest ? 'the baseline' : '']),
      ));
      failures(peerRuns.map((r) => r.level), 'peer', log);

      // 3. The platform.
      log(`\n== ocr 3/4: the platform: gateway + a worker serving ${model.name} (max_batch_size ${model.maxBatchSize}, max_delay_ms ${model.maxDelayMs}), POST /v1/jobs with Prefer: wait=30, ${clients} clients, ${seconds} s`);
      const t0 = performance.now();
      const platform = await startBenchPlatform(redis.url, { workerModels: MODEL, probeBody: bodies[0] });
      log(`  gateway pid ${platform.gateway.pid}, worker pid ${platform.worker.pid}; up and answering jobs in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      let level: Level;
      try {
        const target = { url: `${platform.base}/v1/jobs`, platform: true, pids: { gateway: platform.gateway.pid!, worker: platform.worker.pid! }, redis: redis.admin, metricsBase: platform.base };
        level = await warmThenRun(target, clients, seconds, bodies);
      } finally {
        const closed = await platform.close();
        log(`  stopped: gateway in ${fmt(closed.gateway.ms, 0)} ms, worker in ${fmt(closed.worker.ms, 0)} ms; ${closed.keysDeleted} keys deleted`);
      }
      log(latencyRow([level]));
      log(cpuTable([level], ['gateway', 'worker', 'Redis'], true));
      log(`  Redis per job: ${describeRedisPerJob(level.redis!, Math.max(1, level.jobs))}`);
      log(`  batch sizes (share of jobs): ${powersOfTwo(level.batchSizes, model.maxBatchSize)}; mean ${mean(level.batchSizes).toFixed(2)}, mean inference_ms ${mean(level.inferenceMs).toFixed(2)}, mean queue_ms ${mean(level.queueMs).toFixed(2)}`);
      log(`  envelope sizes: ${describeEnvelopes(level.envelopes)}`);
      failures([level], 'platform', log);

      // 3b. Two workers, one intra-op thread each: beside the target, so its failure does not cost the target's figures.
      let scaled: Level | undefined;
      try {
        scaled = await runTwoWorkers(redis, bodies, clients, seconds, log);
        failures([scaled], 'platform, two workers', log);
      } catch (err) {
        log(`  the two-worker run failed, and is left out: ${(err as Error).message}`);
      }

      // 4. Side by side, and the target.
      log(`\n== ocr 4/4: the platform beside the direct peer at ${clients} clients`);
      const row = (who: string, l: Level, server: readonly string[]) => [who, l.rate, p(l, 50).toFixed(1), p(l, 99).toFixed(1), cpuSum(l, server).toFixed(2), l.cpu['load generator']!.toFixed(2)];
      log(
        table(
          ['', 'jobs/s', 'p50 ms', 'p99 ms', 'server CPU ms/job', 'load gen CPU ms/job'],
          [
            row(`direct peer (intra-op threads ${fastest.threads})`, peerLevel, ['peer']),
            row('platform', level, ['gateway', 'worker', 'Redis']),
            ...(scaled ? [row('platform, two workers (intra-op threads 1)', scaled, ['gateway', 'worker', 'worker 2', 'Redis'])] : []),
          ],
        ),
      );
      const coresBusy = (l: Level, server: readonly string[]) => ((cpuSum(l, server) * l.rate) / 1000).toFixed(2);
      log(`  cores the server side kept busy: peer ${coresBusy(peerLevel, ['peer'])}, platform ${coresBusy(level, ['gateway', 'worker', 'Redis'])}${scaled ? `, platform with two workers ${coresBusy(scaled, ['gateway', 'worker', 'worker 2', 'Redis'])}` : ''}`);
      const ratio = level.rate / peerLevel.rate;
      log(table(['target', 'measured', 'target', 'verdict'], [[`platform / peer jobs/s (${fmt(level.rate, 0)} / ${fmt(peerLevel.rate, 0)})`, `${ratio.toFixed(2)}×`, '≥ 1.0×', verdict(ratio >= 1)]]));
      if (scaled) {
        log(
          `  reported beside it, not like for like: the platform with two workers of one intra-op thread each / the one-process peer, jobs/s (${fmt(scaled.rate, 0)} / ${fmt(peerLevel.rate, 0)}): ${(scaled.rate / peerLevel.rate).toFixed(2)}× ` +
            '(two peer processes measured no better than one on ocr-cls: bench/peer/server.ts)',
        );
      }

      for (const r of peerRuns) fig(`peer ${clients} clients, intra-op threads ${r.threads}: throughput`, r.level.rate, 'jobs/s');
      fig(`peer ${clients} clients: intra-op threads of the baseline (0 = default)`, fastest.threads === 'default' ? 0 : fastest.threads, 'threads');
      for (const [who, l] of [['peer', peerLevel], ['platform', level]] as const) {
        fig(`${who} ${clients} clients: throughput`, l.rate, 'jobs/s');
        fig(`${who} ${clients} clients: p50 latency`, p(l, 50), 'ms');
        fig(`${who} ${clients} clients: p99 latency`, p(l, 99), 'ms');
        for (const [name, ms] of Object.entries(l.cpu)) fig(`${who} ${clients} clients: ${name} CPU per job`, ms, 'ms');
        fig(`${who} ${clients} clients: answers not succeeded`, l.failed, 'answers');
      }
      fig(`platform ${clients} clients: mean batch_size`, mean(level.batchSizes), 'instances');
      if (scaled) {
        fig(`platform, two workers of intra-op threads 1, ${clients} clients: throughput`, scaled.rate, 'jobs/s');
        fig(`platform, two workers of intra-op threads 1, ${clients} clients: p50 latency`, p(scaled, 50), 'ms');
        fig(`ratio platform with two workers / peer jobs/s at ${clients} clients`, scaled.rate / peerLevel.rate, '×');
      }
      fig(`platform ${clients} clients: Redis commands per job`, commandsPerJob(level), 'commands');
      fig(`ratio platform / peer jobs/s at ${clients} clients`, ratio, '×', { text: '≥ 1.0', ok: ratio >= 1 });
    } finally {
      await redis.stop();
    }
  } finally {
    await repo.close();
  }
  log(`\n  (ocr took ${((performance.now() - started) / 1000).toFixed(0)} s)`);
  return figures;
}

/**
 * The platform with two worker processes, each running ocr-cls on one
 * intra-op thread: a copy of the repository's ocr-cls with
 * `intra_op_num_threads: 1` added to its config.json (deleted after).
 */
async function runTwoWorkers(redis: BenchRedis, bodies: readonly string[], clients: number, seconds: number, log: (s: string) => void): Promise<Level> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-ocr-'));
  try {
    cpSync(path.join(ROOT, 'models', MODEL), path.join(dir, MODEL), { recursive: true });
    const configFile = path.join(dir, MODEL, 'config.json');
    const config = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
    writeFileSync(configFile, JSON.stringify({ ...config, intra_op_num_threads: 1 }));
    log(`\n== ocr 3/4, again: two workers, each with ${MODEL}'s config and intra_op_num_threads 1, ${clients} clients, ${seconds} s`);
    const platform = await startBenchPlatform(redis.url, { workerModels: MODEL, probeBody: bodies[0], modelRepository: dir, workers: 2 });
    let level: Level;
    try {
      const pids = { gateway: platform.gateway.pid!, worker: platform.workers[0]!.pid!, 'worker 2': platform.workers[1]!.pid! };
      level = await warmThenRun({ url: `${platform.base}/v1/jobs`, platform: true, pids, redis: redis.admin }, clients, seconds, bodies);
    } finally {
      await platform.close();
    }
    log(latencyRow([level]));
    log(cpuTable([level], ['gateway', 'worker', 'worker 2', 'Redis'], true));
    log(`  batch sizes (share of jobs): ${powersOfTwo(level.batchSizes)}; mean ${mean(level.batchSizes).toFixed(2)}, mean inference_ms ${mean(level.inferenceMs).toFixed(2)}`);
    return level;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function latencyRow(levels: readonly Level[]): string {
  return table(
    ['clients', 'jobs', 'jobs/s', 'p50 ms', 'p90 ms', 'p99 ms'],
    levels.map((l) => [String(l.clients), fmt(l.jobs, 0), l.rate, p(l, 50).toFixed(1), p(l, 90).toFixed(1), p(l, 99).toFixed(1)]),
  );
}

/** Raw `session.run` on `batch` random images of `shape`, back to back, after a short warm-up; CPU is this whole process's (ONNX Runtime's pool threads included). */
async function measureOrtImages(session: ort.InferenceSession, inputName: string, shape: readonly number[], batch: number, seconds: number) {
  const size = shape.reduce((a, b) => a * b, 1);
  const x = new ort.Tensor('float32', Float32Array.from({ length: batch * size }, () => Math.random()), [batch, ...shape]);
  const feeds = { [inputName]: x };
  for (let i = 0; i < 3; i++) await session.run(feeds);
  let runs = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000 || runs < 5) {
    await session.run(feeds);
    runs++;
  }
  const msPerRun = (performance.now() - t0) / runs;
  const cpu = process.cpuUsage(cpu0);
  return { batch, runs, msPerRun, rowsPerSecond: (batch * 1000) / msPerRun, cpuMsPerRow: (cpu.user + cpu.system) / 1000 / (runs * batch) };
}
