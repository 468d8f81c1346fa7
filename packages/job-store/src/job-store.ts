import type { Redis } from 'ioredis';
import { keys, type JobError, type JobMetrics } from '@infer/contract';
import { createHash } from 'node:crypto';
import { CANCEL_JOB, CLAIM_IDEMPOTENCY_KEY, CREATE_JOB, END_JOB, START_JOB } from './scripts.js';
import { hashToRecord, recordToHash, type JobRecord, type NewJobRecord } from './job-record.js';

export interface JobStoreOptions {
  prefix: string;
  /** How long an ended job stays readable. */
  resultTtlMs: number;
}

export type CancelOutcome = 'canceled' | 'missing' | 'already_canceled' | 'succeeded' | 'failed';

export type StartOutcome = 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled' | 'missing';

export interface JobEnding {
  id: string;
  status: 'succeeded' | 'failed';
  completedAt: number;
  /** JSON of the output map, for a success. */
  output?: string;
  error?: JobError;
  metrics?: JobMetrics;
}

/**
 * A record stays in Redis while it waits, however long the queue is, and
 * for `resultTtlMs` after it ends. The wait is bounded too, so a record whose
 * queue job was lost some other way does not live forever.
 */
const UNENDED_TTL_MS = 7 * 24 * 3600 * 1000;

type ScriptRedis = Redis & {
  inferCreateJob(key: string, ttlMs: number, ...fieldsAndValues: string[]): Promise<unknown>;
  inferStartJob(key: string, startedAt: number): Promise<StartOutcome>;
  inferEndJob(key: string, ...argv: (string | number)[]): Promise<number>;
  inferCancelJob(key: string, ...argv: (string | number)[]): Promise<string>;
  inferClaimIdempotencyKey(key: string, id: string, ttlMs: number): Promise<string>;
};

/** API.md: the same Idempotency-Key from the same tenant within 24 h returns the first job. */
export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;

/**
 * Job records in Redis: one hash per job, written by the gateway at submit
 * and by the worker as the job runs and ends. Every state change is a Lua
 * script (see scripts.ts), and the end of a job is published on one channel
 * that gateways subscribe to for `Prefer: wait`.
 */
export class JobStore {
  private readonly redis: ScriptRedis;
  private readonly k: ReturnType<typeof keys>;

  constructor(
    redis: Redis,
    private readonly options: JobStoreOptions,
  ) {
    this.k = keys(options.prefix);
    for (const [name, lua] of [
      ['inferCreateJob', CREATE_JOB],
      ['inferStartJob', START_JOB],
      ['inferEndJob', END_JOB],
      ['inferCancelJob', CANCEL_JOB],
      ['inferClaimIdempotencyKey', CLAIM_IDEMPOTENCY_KEY],
    ] as const) {
      if (!(name in redis)) redis.defineCommand(name, { numberOfKeys: 1, lua });
    }
    this.redis = redis as ScriptRedis;
  }

  get channel(): string {
    return this.k.jobEnded;
  }

  async create(record: NewJobRecord): Promise<void> {
    await this.redis.inferCreateJob(
      this.k.job(record.id),
      UNENDED_TTL_MS + this.options.resultTtlMs,
      ...Object.entries(recordToHash(record)).flat(),
    );
  }

  /** Remove a record that never reached the queue (an idempotent replay lost the race). */
  async delete(id: string): Promise<void> {
    await this.redis.unlink(this.k.job(id));
  }

  /** The job that owns this tenant's idempotency key, if any. */
  async idempotentJobId(tenant: string, idempotencyKey: string): Promise<string | null> {
    return this.redis.get(this.idempotencyRedisKey(tenant, idempotencyKey));
  }

  /** Claim the key for `id`; returns the owner's job id (`id` when this call won). */
  async claimIdempotencyKey(tenant: string, idempotencyKey: string, id: string): Promise<string> {
    return this.redis.inferClaimIdempotencyKey(this.idempotencyRedisKey(tenant, idempotencyKey), id, IDEMPOTENCY_TTL_MS);
  }

  /** Hashed, so client-chosen keys of any length or charset make safe Redis key names. */
  private idempotencyRedisKey(tenant: string, idempotencyKey: string): string {
    const digest = createHash('sha256').update(idempotencyKey).digest('base64url');
    return `${this.options.prefix}:idempotency:${tenant}:${digest}`;
  }

  async get(id: string): Promise<JobRecord | null> {
    return hashToRecord(await this.redis.hgetall(this.k.job(id)));
  }

  /** Several records in one round trip (null where missing), e.g. the webhook jobs of a batch. */
  async getMany(ids: readonly string[]): Promise<(JobRecord | null)[]> {
    if (ids.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hgetall(this.k.job(id));
    const results = (await pipe.exec()) ?? [];
    return results.map(([err, value]) => {
      if (err) throw err;
      return hashToRecord(value as Record<string, string>);
    });
  }

  /** Mark jobs running, one round trip for the whole batch; returns each job's status before. */
  async start(ids: readonly string[], startedAt: number): Promise<StartOutcome[]> {
    if (ids.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const id of ids) (pipe as unknown as ScriptRedis).inferStartJob(this.k.job(id), startedAt);
    const results = (await pipe.exec()) ?? [];
    return results.map(([err, value]) => {
      if (err) throw err;
      return value as StartOutcome;
    });
  }

  /** End jobs, one round trip for the whole batch; true where this call ended the job (not already canceled). */
  async end(endings: readonly JobEnding[]): Promise<boolean[]> {
    if (endings.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const e of endings) {
      (pipe as unknown as ScriptRedis).inferEndJob(
        this.k.job(e.id),
        e.status,
        e.completedAt,
        e.output ?? '',
        e.error ? JSON.stringify(e.error) : '',
        e.metrics ? JSON.stringify(e.metrics) : '',
        this.options.resultTtlMs,
        this.k.jobEnded,
        e.id,
      );
    }
    const results = (await pipe.exec()) ?? [];
    return results.map(([err, value]) => {
      if (err) throw err;
      return value === 1;
    });
  }

  /**
   * Cancel a queued or running job of this tenant. `missing` covers another
   * tenant's job too, so the caller answers both with the same 404.
   */
  async cancel(id: string, tenant: string, at: number): Promise<CancelOutcome> {
    const error: JobError = { code: 'canceled', message: 'The job was canceled by the client.' };
    return (await this.redis.inferCancelJob(
      this.k.job(id),
      at,
      this.options.resultTtlMs,
      this.k.jobEnded,
      id,
      tenant,
      JSON.stringify(error),
    )) as CancelOutcome;
  }
}
