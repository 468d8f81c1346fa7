/**
 * Raw BullMQ with no work at all, as honest best cases, not strawmen: the
 * add and drain rates (measureBullmqAddDrain, at the end), which the
 * foundation section prints beside the platform's figures, and the
 * closed-loop round trip below (measureBullmqNoop, the foundation's
 * denominator before the direct peer replaced it; kept for comparisons).
 *
 * What measureBullmqNoop measures: jobs completed per second when `producers` concurrent
 * producers each add one job and wait until it is completed before adding
 * the next (a closed loop, as `producers` HTTP clients with `Prefer: wait`
 * are). Each job makes the hand-offs a platform job makes:
 *   Queue.add (custom random jobId, the platform's job options: 3 attempts
 *   with exponential backoff, removeOnComplete, removeOnFail by age/count;
 *   a payload of the platform's queued form of one mlp input: 64 FP32 as
 *   base64, ~400 bytes) → wait → active (a Worker of concurrency
 *   `producers` fetches it) → a no-op processor → completed (and removed).
 * The producer learns of the completion from the Worker's 'completed' event,
 * which BullMQ emits once moveToFinished has committed it in Redis.
 *
 * What it leaves out, each in BullMQ's favour: HTTP, the job record hash and
 * the pub/sub message that the platform's `Prefer: wait` needs, inference,
 * and a second process (the producers hear of completions in-process, with
 * no Redis round trip). The Queue and the Worker have their own
 * connections, as the gateway and worker processes do, and the Worker takes
 * its next job in the same call that completes one (BullMQ's fastest path).
 */
import { randomUUID } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { ownCpuMs, redisDelta, sampleRedis, type RedisDelta } from './cpu.js';
import { deleteKeys } from './platform.js';

export interface NoopOptions {
  redisUrl: string;
  /** Admin connection for INFO (CPU and command counts). */
  admin: Redis;
  producers: number;
  seconds: number;
  maxJobs: number;
  warmupSeconds?: number;
}

export interface NoopResult {
  jobs: number;
  seconds: number;
  rate: number;
  /** This process (producers, Queue, Worker): CPU ms per job. */
  cpuMsPerJob: number;
  redis: RedisDelta;
}

export async function measureBullmqNoop(options: NoopOptions): Promise<NoopResult> {
  const prefix = `bench-noop-${process.pid}-${Date.now()}`;
  const queueConnection = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
  const workerConnection = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('noop', { connection: queueConnection, prefix });
  const finished = new Map<string, () => void>();
  const worker = new Worker('noop', async () => null, { connection: workerConnection, prefix, concurrency: options.producers });
  worker.on('completed', (job) => finished.get(job.id!)?.());
  worker.on('error', () => undefined); // a failure shows as missing completions, and the run's deadline still ends it
  const features = Buffer.from(Float32Array.from({ length: 64 }, () => Math.random() * 2 - 1).buffer);
  const payload = { tenant: 'bench', inputs: { features: { datatype: 'FP32', shape: [64], b64: features.toString('base64') } } };
  const jobOptions = { attempts: 3, backoff: { type: 'exponential' as const, delay: 500 }, removeOnComplete: true, removeOnFail: { age: 24 * 3600, count: 10_000 } };

  const run = async (seconds: number, maxJobs: number) => {
    let jobs = 0;
    let started = 0;
    const deadline = performance.now() + seconds * 1000;
    const producer = async () => {
      while (performance.now() < deadline && started < maxJobs) {
        started++;
        const jobId = randomUUID();
        const done = new Promise<void>((resolve) => finished.set(jobId, resolve));
        await queue.add('infer', payload, { ...jobOptions, jobId });
        await done;
        finished.delete(jobId);
        jobs++;
      }
    };
    const t0 = performance.now();
    await Promise.all(Array.from({ length: options.producers }, producer));
    return { jobs, seconds: (performance.now() - t0) / 1000 };
  };

  try {
    await worker.waitUntilReady();
    await run(options.warmupSeconds ?? 0.5, Infinity);
    const redisBefore = await sampleRedis(options.admin);
    const cpuBefore = ownCpuMs();
    const { jobs, seconds } = await run(options.seconds, options.maxJobs);
    const cpuMs = ownCpuMs() - cpuBefore;
    const redis = redisDelta(redisBefore, await sampleRedis(options.admin));
    return { jobs, seconds, rate: jobs / seconds, cpuMsPerJob: cpuMs / jobs, redis };
  } finally {
    await worker.close().catch(() => undefined);
    await queue.close().catch(() => undefined);
    await deleteKeys(queueConnection, prefix).catch(() => 0);
    queueConnection.disconnect();
    workerConnection.disconnect();
  }
}

/**
 * Raw BullMQ's two halves on their own, the ceilings of a queue-based design
 * on this machine and this Redis:
 *  - the add rate: `jobs` `Queue.add` calls of the no-op payload above, with
 *    `inFlight` of them in flight at once (each of `inFlight` loops awaits
 *    its add and sends the next), on one Queue connection; BullMQ's own job
 *    ids (no custom jobId: its cheapest add), the platform's job options;
 *  - the drain rate: the jobs the add left waiting, drained by a fresh
 *    Worker of concurrency `concurrency` with a no-op processor: from
 *    `worker.run()` (its connection already open) to the `jobs`-th
 *    'completed' event.
 * Each with this process's CPU and Redis's CPU and commands (INFO
 * commandstats deltas, which count the commands Lua scripts run) per job.
 * A warm-up round of each (a tenth of `jobs`) runs first, so neither pays
 * for JIT or script loading.
 */
export interface RawRateOptions {
  redisUrl: string;
  admin: Redis;
  /** @default 10_000 */
  jobs?: number;
  /** Adds in flight at once. @default 64 */
  inFlight?: number;
  /** The draining Worker's concurrency. @default 64 */
  concurrency?: number;
}

export interface RawRate {
  jobs: number;
  seconds: number;
  rate: number;
  /** This process: CPU ms per job. */
  cpuMsPerJob: number;
  redis: RedisDelta;
}

export async function measureBullmqAddDrain(options: RawRateOptions): Promise<{ add: RawRate; drain: RawRate }> {
  const jobs = options.jobs ?? 10_000;
  const inFlight = options.inFlight ?? 64;
  const concurrency = options.concurrency ?? 64;
  const prefix = `bench-raw-${process.pid}-${Date.now()}`;
  const queueConnection = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('noop', { connection: queueConnection, prefix });
  const workerConnections: Redis[] = [];
  const features = Buffer.from(Float32Array.from({ length: 64 }, () => Math.random() * 2 - 1).buffer);
  const payload = { tenant: 'bench', inputs: { features: { datatype: 'FP32', shape: [64], b64: features.toString('base64') } } };
  const jobOptions = { attempts: 3, backoff: { type: 'exponential' as const, delay: 500 }, removeOnComplete: true, removeOnFail: { age: 24 * 3600, count: 10_000 } };

  const measure = async (n: number, work: () => Promise<void>): Promise<RawRate> => {
    const redisBefore = await sampleRedis(options.admin);
    const cpuBefore = ownCpuMs();
    const t0 = performance.now();
    await work();
    const seconds = (performance.now() - t0) / 1000;
    const cpuMs = ownCpuMs() - cpuBefore;
    const redis = redisDelta(redisBefore, await sampleRedis(options.admin));
    return { jobs: n, seconds, rate: n / seconds, cpuMsPerJob: cpuMs / n, redis };
  };
  const addAll = async (n: number) => {
    let sent = 0;
    const loop = async () => {
      while (sent < n) {
        sent++;
        await queue.add('infer', payload, jobOptions);
      }
    };
    await Promise.all(Array.from({ length: Math.min(inFlight, n) }, loop));
  };
  /** A Worker, ready but not yet fetching, and a function that runs it until `n` completions. */
  const drainer = async () => {
    const connection = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
    workerConnections.push(connection);
    const worker = new Worker('noop', async () => null, { connection, prefix, concurrency, autorun: false });
    worker.on('error', () => undefined); // a failure shows as a drain that never ends; the caller's timeout names it
    await worker.waitUntilReady();
    const drain = (n: number) =>
      new Promise<void>((resolve, reject) => {
        let completed = 0;
        const timer = setTimeout(() => reject(new Error(`bench: raw BullMQ drain stuck at ${completed} of ${n} completions`)), 120_000);
        worker.on('completed', () => {
          if (++completed === n) {
            clearTimeout(timer);
            resolve();
          }
        });
        worker.run().catch(reject);
      });
    return { worker, drain };
  };

  try {
    await queue.waitUntilReady();
    const warm = Math.max(1, Math.round(jobs / 10));
    await addAll(warm);
    const warmDrainer = await drainer();
    await warmDrainer.drain(warm);
    await warmDrainer.worker.close();

    const add = await measure(jobs, () => addAll(jobs));
    const { worker, drain: run } = await drainer();
    try {
      const drain = await measure(jobs, () => run(jobs));
      return { add, drain };
    } finally {
      await worker.close().catch(() => undefined);
    }
  } finally {
    await queue.close().catch(() => undefined);
    await deleteKeys(queueConnection, prefix).catch(() => 0);
    queueConnection.disconnect();
    for (const c of workerConnections) c.disconnect();
  }
}
