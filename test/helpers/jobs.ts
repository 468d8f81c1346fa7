import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { interactiveKeys, interactiveQueue, isEnded, type Job } from '@infer/contract';
import type { Problem } from '@infer/errors';
import type { TestPlatform } from './platform.js';
import { waitUntil } from './wait.js';

/** RFC 3339 date-time, as docs/api.md's times are written. */
export const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/;

/** Fails when a response body carries anything that looks like a stack trace. */
export function expectNoStack(text: string): void {
  expect(text, 'response carries a stack trace').not.to.match(/\bat .+[\\/].+\.[cm]?[jt]s:\d+/);
  expect(text, 'response carries a stack trace').not.to.match(/\n\s+at /);
  expect(text, 'response carries a stack field').not.to.include('"stack"');
}

/** Assert an RFC 9457 problem+json answer with this status and code; returns its body. */
export async function expectProblem(res: Response, status: number, code: string): Promise<Problem> {
  const text = await res.text();
  expect(res.status, `${res.status} ${text}`).to.equal(status);
  expect(res.headers.get('content-type') ?? '').to.match(/^application\/problem\+json\b/);
  expectNoStack(text);
  const body = JSON.parse(text) as Problem;
  expect(body).to.include.all.keys('type', 'title', 'status', 'detail', 'code');
  expect(body.status).to.equal(status);
  expect(body.code, body.detail).to.equal(code);
  expect(body.type).to.be.a('string').and.not.be.empty;
  expect(body.title).to.be.a('string').and.not.be.empty;
  expect(body.detail).to.be.a('string').and.not.be.empty;
  return body;
}

/** `Retry-After` as delay-seconds: a positive integer. */
export function expectRetryAfter(res: Response): number {
  const raw = res.headers.get('retry-after');
  expect(raw, 'Retry-After header').to.match(/^\d+$/);
  const seconds = Number(raw);
  expect(seconds).to.be.greaterThan(0);
  return seconds;
}

export interface Submitted {
  res: Response;
  job: Job;
}

/** POST /v1/jobs; `wait` sends `Prefer: wait=N`. Throws unless the answer is 200 or 202. */
export async function postJob(p: TestPlatform, body: unknown, options: { wait?: number; key?: string } = {}): Promise<Submitted> {
  const res = await p.api('/v1/jobs', {
    method: 'POST',
    body: JSON.stringify(body),
    ...(options.wait !== undefined ? { headers: { prefer: `wait=${options.wait}` } } : {}),
    ...(options.key ? { key: options.key } : {}),
  });
  const text = await res.text();
  if (res.status !== 200 && res.status !== 202) throw new Error(`POST /v1/jobs: ${res.status} ${text}`);
  return { res, job: JSON.parse(text) as Job };
}

/** POST with `Prefer: wait` and insist the job ended (200) in that time. */
export async function runJob(p: TestPlatform, body: unknown, waitSeconds = 20): Promise<Job> {
  const { res, job } = await postJob(p, body, { wait: waitSeconds });
  expect(res.status, `job ${job.id} did not end within ${waitSeconds} s (${job.status})`).to.equal(200);
  return job;
}

export async function getJob(p: TestPlatform, id: string, key?: string): Promise<Job> {
  const res = await p.api(`/v1/jobs/${id}`, key ? { key } : {});
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET /v1/jobs/${id}: ${res.status} ${text}`);
  return JSON.parse(text) as Job;
}

/** Poll GET /v1/jobs/{id} (no Prefer) until the job has ended. */
export async function pollJob(p: TestPlatform, id: string, timeoutMs = 10_000): Promise<Job> {
  return waitUntil(
    async () => {
      const job = await getJob(p, id);
      return isEnded(job.status) ? job : null;
    },
    timeoutMs,
    `job ${id} to end`,
  );
}

/** Every value of a nested JSON array (or a bare scalar), flattened in row-major order. */
export function flatten(value: unknown): Array<number | boolean> {
  if (Array.isArray(value)) return value.flatMap((v) => flatten(v));
  if (typeof value === 'number' || typeof value === 'boolean') return [value];
  throw new Error(`not a tensor value: ${JSON.stringify(value)}`);
}

/** The nested array's shape, read from its first element at each depth. */
export function nestedShape(value: unknown): number[] {
  const shape: number[] = [];
  for (let v = value; Array.isArray(v); v = v[0]) shape.push(v.length);
  return shape;
}

/** What a probe saw at one moment. */
export interface QueueSnapshot {
  /** Jobs accepted and not ended across the probed queues (their job index entries). */
  queued: number;
  /** Envelopes (BullMQ jobs) in any state across the probed queues. */
  envelopes: number;
  /** Ended jobs' records under the prefix. */
  records: number;
  /** Every key under the prefix but the rate limiter's and BullMQ's queue metadata. */
  keys: Set<string>;
}

/**
 * What a test needs to prove "nothing was enqueued": the jobs and envelopes
 * in the given model versions' queues, the job records under the prefix,
 * and the prefix's keys as a whole (a job that went to a queue nobody probed
 * still shows up there).
 */
export class QueueProbe {
  private readonly redis: Redis;
  private readonly queues: Queue[];
  private readonly indexes: string[];

  constructor(
    redisUrl: string,
    private readonly prefix: string,
    modelVersions: ReadonlyArray<readonly [string, string]>,
  ) {
    this.redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    this.queues = modelVersions.map(([m, v]) => {
      const ref = interactiveQueue(prefix, m, v);
      return new Queue(ref.name, { connection: this.redis, prefix: ref.prefix });
    });
    this.indexes = modelVersions.map(([m, v]) => interactiveKeys(prefix, m, v).index);
  }

  async snapshot(): Promise<QueueSnapshot> {
    const counts = await Promise.all(this.queues.map((q) => q.getJobCounts()));
    const envelopes = counts.reduce((sum, c) => sum + Object.values(c).reduce((a, b) => a + b, 0), 0);
    const queued = (await Promise.all(this.indexes.map((k) => this.redis.hlen(k)))).reduce((a, b) => a + b, 0);
    const keys = new Set<string>();
    let cursor = '0';
    do {
      const [next, found] = await this.redis.scan(cursor, 'MATCH', `${this.prefix}:*`, 'COUNT', 1000);
      cursor = next;
      for (const k of found) if (!k.startsWith(`${this.prefix}:ratelimit`) && !k.endsWith(':meta')) keys.add(k);
    } while (cursor !== '0');
    const records = [...keys].filter((k) => /^[^{]*\{[a-z2-7]{8}\}:job:/.test(k.slice(this.prefix.length + 1))).length;
    return { queued, envelopes, records, keys };
  }

  /** Nothing was enqueued or stored since `before`. */
  async expectNothingNew(before: QueueSnapshot): Promise<void> {
    const now = await this.snapshot();
    expect(now.queued, 'jobs in the queues').to.equal(before.queued);
    expect(now.envelopes, 'envelopes in the queues').to.equal(before.envelopes);
    expect(now.records, 'job records in Redis').to.equal(before.records);
    expect([...now.keys].filter((k) => !before.keys.has(k) && !k.endsWith(':queued')), 'new keys in Redis').to.deep.equal([]);
  }

  /** Exactly `n` jobs were enqueued since `before` (none has ended: no worker runs). */
  async expectNew(before: QueueSnapshot, n: number): Promise<void> {
    const now = await this.snapshot();
    expect(now.queued - before.queued, 'new jobs in the queues').to.equal(n);
    expect(now.records - before.records, 'new job records in Redis').to.equal(0);
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.queues.map((q) => q.close()));
    this.redis.disconnect();
  }
}

/** Whether every one of these GET paths answers 404 now (jobs or batches expired), each with `key` or the test key. */
export async function allGone(p: TestPlatform, paths: ReadonlyArray<string | { path: string; key: string }>): Promise<boolean> {
  for (const entry of paths) {
    const { path, key } = typeof entry === 'string' ? { path: entry, key: undefined } : entry;
    const res = await p.api(path, key ? { key } : {});
    await res.arrayBuffer();
    if (res.status !== 404) return false;
  }
  return true;
}
