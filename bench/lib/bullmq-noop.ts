/**
 * Raw BullMQ with no work at all: the denominator of the platform's
 * throughput target, so it has to be an honest best case, not a strawman.
 *
 * What it measures: jobs completed per second when `producers` concurrent
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
