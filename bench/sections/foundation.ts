/**
 * Issue 2's figures, in one run:
 *  1. raw ONNX Runtime throughput in-process for mlp at batch sizes 1..64;
 *  2. raw BullMQ no-op throughput on the same Redis: 64 producers, each
 *     adding a job (the same payload size as an mlp job) and waiting for a
 *     Worker of concurrency 64 to complete it, with removeOnComplete: the
 *     same add → active → completed hand-offs a platform job makes, with no
 *     work at all;
 *  3. the platform end to end: single mlp jobs through HTTP (POST /v1/jobs
 *     with Prefer: wait) from 1 and 64 concurrent clients, against the real
 *     gateway and worker processes;
 *  4. the ratios: e2e(64) / BullMQ no-op ≥ 0.5, p50(1 client) ≤ max_delay_ms + 5.
 */
import http from 'node:http';
import path from 'node:path';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import * as ort from 'onnxruntime-node';
import { ROOT, formatFigure, percentile, startBenchPlatform, startRedis, type Figure } from '../lib/platform.js';

const MLP = path.join(ROOT, 'models', 'mlp', '2', 'model.onnx');
const MLP_MAX_DELAY_MS = 2;

function randomFeatures(): number[] {
  return Array.from({ length: 64 }, () => Math.random() * 2 - 1);
}

async function rawOrt(log: (s: string) => void): Promise<Map<number, number>> {
  const session = await ort.InferenceSession.create(MLP, { extra: { session: { intra_op: { allow_spinning: '0' } } } });
  const rates = new Map<number, number>();
  for (const size of [1, 2, 4, 8, 16, 32, 64]) {
    const x = new ort.Tensor('float32', Float32Array.from({ length: size * 64 }, () => Math.random()), [size, 64]);
    for (let i = 0; i < 50; i++) await session.run({ features: x });
    let runs = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < 400) {
      await session.run({ features: x });
      runs++;
    }
    const ms = (performance.now() - t0) / runs;
    rates.set(size, (size * 1000) / ms);
    log(formatFigure({ name: `raw ORT, batch ${size}`, value: (size * 1000) / ms, unit: `rows/s  (${ms.toFixed(3)} ms/run)` }));
  }
  await session.release();
  return rates;
}

async function rawBullmq(redisUrl: string, seconds: number): Promise<number> {
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const workerConnection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const prefix = `bench-noop-${process.pid}`;
  const queue = new Queue('noop', { connection, prefix });
  const waiting = new Map<string, () => void>();
  const worker = new Worker('noop', async () => null, { connection: workerConnection, prefix, concurrency: 64 });
  worker.on('completed', (job) => waiting.get(job.id!)?.());
  await worker.waitUntilReady();
  // A payload the size of a queued mlp job: 64 FP32 values as base64.
  const payload = { tenant: 'bench', inputs: { features: { datatype: 'FP32', shape: [64], b64: Buffer.alloc(256, 7).toString('base64') } } };
  let done = 0;
  let seq = 0;
  const deadline = performance.now() + seconds * 1000;
  const producer = async () => {
    while (performance.now() < deadline) {
      const id = `j${seq++}`;
      const finished = new Promise<void>((resolve) => waiting.set(id, resolve));
      await queue.add('noop', payload, { jobId: id, removeOnComplete: true });
      await finished;
      waiting.delete(id);
      done++;
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 64 }, producer));
  const rate = done / ((performance.now() - t0) / 1000);
  await worker.close();
  await queue.obliterate({ force: true }).catch(() => undefined);
  await queue.close();
  connection.disconnect();
  workerConnection.disconnect();
  return rate;
}

interface HttpRun {
  rate: number;
  p50: number;
  p99: number;
  meanBatch: number;
  maxBatch: number;
  jobs: number;
}

async function httpClients(base: string, clients: number, seconds: number): Promise<HttpRun> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const url = new URL('/v1/jobs', base);
  const bodies = Array.from({ length: 256 }, () => JSON.stringify({ model: 'mlp', input: { features: randomFeatures() } }));
  const latencies: number[] = [];
  const batchSizes: number[] = [];
  const post = (body: string) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = http.request(
        url,
        {
          method: 'POST',
          agent,
          headers: { authorization: 'Bearer bench-key', 'content-type': 'application/json', prefer: 'wait=30', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const deadline = performance.now() + seconds * 1000;
  let n = 0;
  const client = async () => {
    while (performance.now() < deadline) {
      const t = performance.now();
      const res = await post(bodies[n++ % bodies.length]!);
      if (res.status !== 200) throw new Error(`job answered ${res.status}: ${res.text.slice(0, 200)}`);
      latencies.push(performance.now() - t);
      const job = JSON.parse(res.text) as { metrics: { batch_size: number } | null };
      if (job.metrics) batchSizes.push(job.metrics.batch_size);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, client));
  const elapsed = (performance.now() - t0) / 1000;
  agent.destroy();
  return {
    rate: latencies.length / elapsed,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    meanBatch: batchSizes.reduce((a, b) => a + b, 0) / Math.max(1, batchSizes.length),
    maxBatch: Math.max(...batchSizes),
    jobs: latencies.length,
  };
}

export async function runFoundationBench(log: (s: string) => void = console.log): Promise<Figure[]> {
  const figures: Figure[] = [];
  const add = (f: Figure) => {
    figures.push(f);
    log(formatFigure(f));
  };
  log('\n== foundation: raw ONNX Runtime (mlp, in-process)');
  const ortRates = await rawOrt(log);
  for (const [size, rate] of ortRates) figures.push({ name: `raw ORT rows/s, batch ${size}`, value: rate, unit: 'rows/s' });

  const redis = await startRedis();
  try {
    log('\n== foundation: raw BullMQ no-op (64 producers, worker concurrency 64)');
    const bull = await rawBullmq(redis.url, 4);
    add({ name: 'raw BullMQ no-op throughput', value: bull, unit: 'jobs/s' });

    log('\n== foundation: platform end to end (real gateway + worker processes, POST /v1/jobs with Prefer: wait)');
    const platform = await startBenchPlatform(redis.url);
    try {
      await httpClients(platform.base, 16, 1); // warm-up
      const one = await httpClients(platform.base, 1, 4);
      add({ name: '1 client: throughput', value: one.rate, unit: 'jobs/s' });
      add({ name: '1 client: p50 latency', value: one.p50, unit: 'ms', target: `≤ max_delay_ms + 5 = ${MLP_MAX_DELAY_MS + 5}`, ok: one.p50 <= MLP_MAX_DELAY_MS + 5 });
      add({ name: '1 client: p99 latency', value: one.p99, unit: 'ms' });
      const many = await httpClients(platform.base, 64, 6);
      add({ name: '64 clients: throughput', value: many.rate, unit: 'jobs/s' });
      add({ name: '64 clients: p50 latency', value: many.p50, unit: 'ms' });
      add({ name: '64 clients: p99 latency', value: many.p99, unit: 'ms' });
      add({ name: '64 clients: mean batch_size', value: many.meanBatch, unit: 'instances' });
      add({ name: '64 clients: max batch_size (≤ max_batch_size 64)', value: many.maxBatch, unit: 'instances', target: '≤ 64', ok: many.maxBatch <= 64 });
      const ratio = many.rate / bull;
      add({ name: 'ratio e2e(64 clients) / raw BullMQ no-op', value: ratio, unit: '×', target: '≥ 0.5', ok: ratio >= 0.5 });
      const seen = Math.max(1, Math.round(many.meanBatch));
      const nearest = [...ortRates.keys()].reduce((a, b) => (Math.abs(b - seen) < Math.abs(a - seen) ? b : a));
      // Where time goes: the model itself is a rounding error at the batch sizes seen.
      add({ name: `raw ORT at the nearest batch size seen (${nearest})`, value: ortRates.get(nearest)!, unit: 'rows/s' });
    } finally {
      await platform.close();
    }
  } finally {
    await redis.stop();
  }
  return figures;
}
