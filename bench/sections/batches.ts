/**
 * Bench section: bulk batches (`/v1/batches`) on the MLP, against a real
 * gateway and worker (spawned processes) and a Redis of its own.
 *
 * What it measures, and the target each figure is held to:
 *  - raw ORT rows/s at the model's max_batch_size (the ceiling);
 *  - parse-and-pack rows/s: one core JSON.parse-ing the same NDJSON lines
 *    into a Float32Array (the gateway's floor of work per row);
 *  - end-to-end rows/s of a 100k-row upload, nested-array lines
 *    (target ≥ 0.6 × min(parse, ORT)) and b64 lines (target ≥ 0.5 × ORT);
 *  - Redis commands per row over a whole batch, from INFO commandstats
 *    (target ≤ 0.05);
 *  - median interactive job latency while a 200k-row batch runs, against
 *    idle (target < 2×);
 *  - gateway and worker peak RSS while a 1,000,000-line batch streams in and
 *    runs (target < 300 MB each).
 *
 * The upload is streamed from a generator, so the bench does not hold a
 * million lines either. Run alone: `npx tsx bench/sections/batches.ts`
 * (starts `redis-server` from the PATH on a free port). BENCH_MODEL_REPOSITORY
 * points it at another model repository (to compare ORT thread settings, say).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Redis as IORedis, type Redis } from 'ioredis';
import { ModelRepository, runModel } from '@infer/models';
import { describeRedisPerJob, ownCpuMs, processCpuMs, redisDelta, sampleRedis } from '../lib/cpu.js';
import { ROOT, benchApi as api, startBenchPlatform, startRedis, until, type BenchPlatform as Platform, type Figure } from '../lib/platform.js';


export interface BatchesBenchOptions {
  /** A Redis to use; default: a private `redis-server` on a free port. */
  redisUrl?: string;
  /** Rows of the throughput batches. @default 100_000 */
  rows?: number;
  /** Rows of the batch that runs under the interactive jobs. @default 200_000 */
  fairnessRows?: number;
  /** Lines of the memory batch. @default 1_000_000 */
  memoryRows?: number;
  /** The model repository the gateway and worker load. @default the shipped models */
  modelRepository?: string;
  log?: (line: string) => void;
}




/** Deterministic MLP features. */
function features(i: number): Float32Array {
  const out = new Float32Array(64);
  let x = (i * 2654435761) >>> 0;
  for (let k = 0; k < 64; k++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[k] = x / 2147483648 - 1;
  }
  return out;
}

/**
 * Lines are a distinct custom id and one of 4096 precomputed inputs, so the
 * bench's own process spends little CPU making them (it shares the cores
 * with the gateway and the worker) and holds only the 4096 inputs.
 */
const POOL = 4096;
const nestedInputs = Array.from({ length: POOL }, (_, i) => `"input":{"features":${JSON.stringify(Array.from(features(i)))}}}\n`);
const b64Inputs = Array.from(
  { length: POOL },
  (_, i) => `"input":{"features":{"datatype":"FP32","shape":[64],"b64":"${Buffer.from(features(i).buffer).toString('base64')}"}}}\n`,
);
const nestedLine = (i: number): string => `{"custom_id":"r${i}",${nestedInputs[i % POOL]}`;
const b64Line = (i: number): string => `{"custom_id":"r${i}",${b64Inputs[i % POOL]}`;

/**
 * A request body streamed from a generator of lines, pulled only as fast as
 * the socket takes it. Small pieces (200 lines) keep this process's event
 * loop free to time the interactive jobs it sends meanwhile.
 */
function streamBody(rows: number, line: (i: number) => string): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i >= rows) return controller.close();
      let s = '';
      for (const end = Math.min(rows, i + 200); i < end; i++) s += line(i);
      controller.enqueue(Buffer.from(s));
    },
  });
}

function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0);
  return { rss: kb('VmRSS') * 1024, hwm: kb('VmHWM') * 1024 };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
};




interface BatchState {
  id: string;
  status: string;
  request_counts: { total: number; succeeded: number; failed: number };
}

/**
 * A whole upload made before the clock starts, in 256 KiB pieces: the
 * throughput runs time the platform, not the bench making lines on the same
 * two cores (as a load generator replays a prepared file).
 */
function prebuiltBody(rows: number, line: (i: number) => string): Buffer[] {
  const pieces: Buffer[] = [];
  let s = '';
  for (let i = 0; i < rows; i++) {
    s += line(i);
    if (s.length >= 256 * 1024) {
      pieces.push(Buffer.from(s));
      s = '';
    }
  }
  if (s) pieces.push(Buffer.from(s));
  return pieces;
}

function replay(pieces: Buffer[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i >= pieces.length) return controller.close();
      controller.enqueue(pieces[i++]!);
    },
  });
}

async function upload(base: string, rows: number, line: ((i: number) => string) | Buffer[]): Promise<BatchState> {
  const res = await api(base, '/v1/batches?model=mlp', {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson' },
    body: Array.isArray(line) ? replay(line) : streamBody(rows, line),
    duplex: 'half',
  } as RequestInit);
  if (res.status !== 202) throw new Error(`upload: ${res.status} ${await res.text()}`);
  return (await res.json()) as BatchState;
}

/** Stream a batch's results file, counting its lines: as it is, or gzip-compressed on the wire (fetch undoes it). */
async function download(base: string, id: string, coding: 'identity' | 'gzip'): Promise<number> {
  const res = await api(base, `/v1/batches/${id}/results`, { headers: { 'accept-encoding': coding } });
  if (res.status !== 200 || !res.body) throw new Error(`results: ${res.status}`);
  let lines = 0;
  for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) {
    for (let i = 0; i < piece.length; i++) if (piece[i] === 0x0a) lines++;
  }
  return lines;
}

async function waitEnded(base: string, id: string, timeoutMs = 600_000): Promise<BatchState> {
  return until(
    `batch ${id}`,
    async () => {
      const b = (await (await api(base, `/v1/batches/${id}`)).json()) as BatchState;
      return b.status === 'completed' || b.status === 'canceled' ? b : null;
    },
    timeoutMs,
    25,
  );
}

async function rawOrt(modelRepository: string): Promise<{ ort: number; parse: number }> {
  const models = await ModelRepository.load(modelRepository, { only: ['mlp'] });
  try {
    const model = models.resolve('mlp');
    const n = model.maxBatchSize;
    const data = new Float32Array(n * 64);
    for (let r = 0; r < n; r++) data.set(features(r), r * 64);
    let rows = 0;
    let t0 = performance.now();
    while (performance.now() - t0 < 2000) {
      await runModel(model, { features: { datatype: 'FP32', shape: [n, 64], data } });
      rows += n;
    }
    const ort = rows / ((performance.now() - t0) / 1000);
    const lines = Array.from({ length: POOL }, (_, i) => nestedLine(i));
    const packed = new Float32Array(2048 * 64);
    t0 = performance.now();
    const total = 100_000;
    for (let i = 0; i < total; i++) {
      const item = JSON.parse(lines[i % lines.length]!) as { input: { features: number[] } };
      packed.set(item.input.features, (i % 2048) * 64);
    }
    return { ort, parse: total / ((performance.now() - t0) / 1000) };
  } finally {
    await models.close();
  }
}

export async function runBatchesBench(options: BatchesBenchOptions = {}): Promise<Figure[]> {
  const log = options.log ?? ((l: string) => console.log(l));
  const rows = options.rows ?? 100_000;
  const fairnessRows = options.fairnessRows ?? 200_000;
  const memoryRows = options.memoryRows ?? 1_000_000;
  const modelRepository = options.modelRepository ?? path.join(ROOT, 'models');
  const figures: Figure[] = [];
  const add = (f: Figure) => {
    figures.push(f);
    log(`${f.name}: ${Math.round(f.value * 1000) / 1000} ${f.unit}${f.target ? ` (target ${f.target}: ${f.ok ? 'ok' : 'MISSED'})` : ''}`);
  };

  const ownRedis = options.redisUrl ? undefined : await startRedis();
  const redisUrl = options.redisUrl ?? ownRedis!.url;
  const admin: Redis = ownRedis ? ownRedis.admin : new IORedis(redisUrl, { maxRetriesPerRequest: null });
  let platform: Platform | undefined;
  try {
    const { ort, parse } = await rawOrt(modelRepository);
    add({ name: 'raw ORT rows/s (mlp, batch 64)', value: ort, unit: 'rows/s' });
    add({ name: 'parse+pack rows/s (one core, nested lines)', value: parse, unit: 'rows/s' });

    platform = await startBenchPlatform(redisUrl, { modelRepository });
    const { base } = platform;

    const forms = (options as { forms?: string[] }).forms ?? ['nested', 'b64'];
    for (const [form, line] of [
      ['nested', nestedLine],
      ['b64', b64Line],
    ] as const) {
      if (!forms.includes(form)) continue;
      // A first, smaller batch of the same lines warms both processes up (JIT,
      // connections, buffers): the figure is the steady rate a long upload sees.
      const warm = await upload(base, rows / 5, prebuiltBody(rows / 5, line));
      await waitEnded(base, warm.id);
      const body = prebuiltBody(rows, line);
      const redis0 = await sampleRedis(admin);
      const cpu0 = { gateway: processCpuMs(platform.gateway.pid!), worker: processCpuMs(platform.worker.pid!), redis: redis0.cpuMs, client: ownCpuMs() };
      const t0 = performance.now();
      const batch = await upload(base, rows, body);
      const ended = await waitEnded(base, batch.id);
      const seconds = (performance.now() - t0) / 1000;
      const redis1 = await sampleRedis(admin);
      const cpu1 = { gateway: processCpuMs(platform.gateway.pid!), worker: processCpuMs(platform.worker.pid!), redis: redis1.cpuMs, client: ownCpuMs() };
      const redis = redisDelta(redis0, redis1);
      const commands = redis.calls;
      // Where the cycles went: on a machine with few cores the rate is bounded by CPU per row, all processes together.
      const perRow = (k: keyof typeof cpu0) => ((cpu1[k] - cpu0[k]) * 1000) / rows;
      const parts = (['gateway', 'worker', 'redis', 'client'] as const).map((k) => `${k} ${perRow(k).toFixed(2)}`);
      const total = (['gateway', 'worker', 'redis', 'client'] as const).reduce((sum, k) => sum + perRow(k), 0);
      log(`  ${form}: CPU µs per row: ${parts.join(', ')}; total ${total.toFixed(2)} (${((total * rows) / 1e6 / seconds).toFixed(2)} cores busy over ${seconds.toFixed(2)} s)`);
      if (ended.request_counts.succeeded !== rows) throw new Error(`${form} batch: ${JSON.stringify(ended.request_counts)}`);
      const rate = rows / seconds;
      const target = form === 'nested' ? 0.6 * Math.min(parse, ort) : 0.5 * ort;
      add({ name: `end-to-end rows/s, ${form} lines`, value: rate, unit: 'rows/s', target: `≥ ${Math.round(target)}`, ok: rate >= target });
      add({ name: `Redis commands per row, ${form} batch`, value: commands / rows, unit: 'cmd/row', target: '≤ 0.05', ok: commands / rows <= 0.05 });
      log(`    ${form}: Redis commands per 1,000 rows (INFO commandstats, scripts' own included, the polls of the batch's state too): ${describeRedisPerJob(redis, rows / 1000, 8)}`);
      // Results are stored as raw outputs and printed as NDJSON while they download: time that too, as it is
      // (the figure earlier runs printed) and gzip-compressed (what fetch asks for; both ends on this machine).
      for (const coding of ['identity', 'gzip'] as const) {
        const d0 = performance.now();
        const lines = await download(base, batch.id, coding);
        if (lines !== rows) throw new Error(`${form} batch: ${lines} result lines for ${rows} rows (${coding})`);
        add({ name: `results download rows/s, ${form} batch${coding === 'gzip' ? ', gzip' : ''}`, value: rows / ((performance.now() - d0) / 1000), unit: 'rows/s' });
      }
    }

    // Interactive latency, idle and under a running batch.
    const job = async () => {
      const t = performance.now();
      const res = await api(base, '/v1/jobs', { method: 'POST', headers: { prefer: 'wait=30' }, body: JSON.stringify({ model: 'mlp', input: { features: Array.from(features(7)) } }) });
      if (res.status !== 200) throw new Error(`job: ${res.status}`);
      return performance.now() - t;
    };
    const idle: number[] = [];
    for (let i = 0; i < 100; i++) idle.push(await job());
    // Jobs one after another from the moment the batch starts running until it ends.
    const loaded: number[] = [];
    let running = true;
    const ended = upload(base, fairnessRows, b64Line)
      .then((batch) => waitEnded(base, batch.id))
      .finally(() => (running = false));
    await until('the batch to run', async () => {
      const list = (await (await api(base, '/v1/batches?limit=1')).json()) as { data: BatchState[] };
      return list.data[0]?.status === 'running' && list.data[0].request_counts.succeeded > 0;
    });
    while (running) loaded.push(await job());
    await ended;
    const idleMs = median(idle);
    const loadedMs = median(loaded);
    add({ name: 'interactive job latency, idle (median)', value: idleMs, unit: 'ms' });
    add({ name: `interactive job latency, ${fairnessRows}-row batch running (median of ${loaded.length})`, value: loadedMs, unit: 'ms', target: `< ${Math.round(2 * idleMs * 100) / 100}`, ok: loadedMs < 2 * idleMs });

    // Memory while a million lines stream in and run.
    const peak = { gateway: 0, worker: 0 };
    const sample = () => {
      for (const [name, proc] of [
        ['gateway', platform!.gateway],
        ['worker', platform!.worker],
      ] as const) {
        try {
          peak[name] = Math.max(peak[name], memoryOf(proc.pid!).rss);
        } catch {
          /* exited */
        }
      }
    };
    for (const [name, proc] of [
      ['gateway', platform.gateway],
      ['worker', platform.worker],
    ] as const) {
      add({ name: `${name} RSS before the ${memoryRows}-line batch`, value: memoryOf(proc.pid!).rss / 2 ** 20, unit: 'MB' });
    }
    const sampler = setInterval(sample, 100);
    const t0 = performance.now();
    const big = await upload(base, memoryRows, nestedLine);
    const bigEnded = await waitEnded(base, big.id);
    clearInterval(sampler);
    sample();
    const hwm = { gateway: memoryOf(platform.gateway.pid!).hwm, worker: memoryOf(platform.worker.pid!).hwm };
    add({ name: `${memoryRows}-line batch end to end`, value: memoryRows / ((performance.now() - t0) / 1000), unit: 'rows/s' });
    if (bigEnded.request_counts.succeeded !== memoryRows) throw new Error(`memory batch: ${JSON.stringify(bigEnded.request_counts)}`);
    for (const name of ['gateway', 'worker'] as const) {
      const mb = peak[name] / 2 ** 20;
      add({ name: `${name} peak RSS (sampled) during the ${memoryRows}-line batch`, value: mb, unit: 'MB', target: '< 300', ok: mb < 300 });
      add({ name: `${name} VmHWM (whole run)`, value: hwm[name] / 2 ** 20, unit: 'MB' });
    }
  } finally {
    await platform?.close();
    if (ownRedis) await ownRedis.stop();
    else admin.disconnect();
  }
  return figures;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  runBatchesBench(process.env.BENCH_MODEL_REPOSITORY ? { modelRepository: process.env.BENCH_MODEL_REPOSITORY } : {}).then(
    (figures) => process.exit(figures.every((f) => f.ok !== false) ? 0 : 1),
    (err: unknown) => {
      console.error(err);
      process.exit(2);
    },
  );
}
