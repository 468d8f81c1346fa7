import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { DEADLINE_EXCEEDED, EnvelopeData, JOB_ID_RE, jobKeys, type EnvelopeJob, platformNow } from '@infer/contract';
import { encodeRecord } from './job-record.js';
import { withJobScripts, type ScriptPipeline, type ScriptRedis } from './redis-scripts.js';

export interface JobStoreOptions {
  prefix: string;
  /** How long an ended job stays readable. */
  resultTtlMs: number;
}

/** Where a job stands, as one read finds it. */
export type JobLookup =
  | { kind: 'ended'; record: Buffer }
  | {
      kind: 'pending';
      model: string;
      version: string;
      job: EnvelopeJob;
      /** When a worker took its envelope (epoch ms), or null while queued. */
      startedAt: number | null;
      /** When a worker first took its envelope (epoch ms; a take after a stall keeps it), or null while queued. */
      firstTakenAt: number | null;
      /** The submitting gateway's channel. */
      gateway: string;
      /** "<queue name>:<envelope id>", as the cancel needs it. */
      where: string;
    }
  | { kind: 'missing' };

/** Whether a job has a webhook that wants `job.completed` (the default filter). */
export function hasCompletedHook(job: EnvelopeJob): boolean {
  return job.webhook !== undefined && (job.webhook_events_filter ?? ['completed']).includes('completed');
}

/** Whether a job has a webhook that wants `job.started` (asked for by name: the default filter does not). */
export function hasStartedHook(job: EnvelopeJob): boolean {
  return job.webhook !== undefined && job.webhook_events_filter?.includes('start') === true;
}

/** docs/api.md: the same Idempotency-Key from the same tenant within 24 h returns the first job. */
export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;

/** Who holds an Idempotency-Key: the job it was claimed for, and when (null for a claim made before the time was kept). */
export interface IdempotencyClaim {
  owner: string;
  claimedAt: number | null;
  /** The key's value as read, for a compare-and-set. */
  raw: string;
}

function parseClaim(raw: string): IdempotencyClaim {
  const [owner = raw, at] = raw.split(' ');
  const claimedAt = at === undefined ? null : Number(at);
  return { owner, claimedAt: Number.isFinite(claimedAt) ? claimedAt : null, raw };
}

/**
 * Reading and cancelling jobs by id (the gateway's side of the job
 * records; the queue side is EnvelopeQueue), and Idempotency-Keys. A job id
 * leads to its keys by itself: its first characters are its queue's hash tag.
 */
export class JobStore {
  private readonly redis: ScriptRedis;

  constructor(
    redis: Redis,
    private readonly options: JobStoreOptions,
  ) {
    this.redis = withJobScripts(redis);
  }

  /**
   * The job as it stands. With `watchChannel`, a job not yet ended also gets
   * that gateway channel told when it ends (a long poll), in the same atomic
   * step, so an end between this read and the wait cannot be missed.
   */
  async read(id: string, watchChannel = ''): Promise<JobLookup> {
    if (!JOB_ID_RE.test(id)) return { kind: 'missing' };
    const k = jobKeys(this.options.prefix, id);
    const reply = await this.redis.inferReadBuffer(k.record, k.index, k.taggedPrefix, id, watchChannel);
    const kind = Number(reply[0]);
    if (kind === 1) return { kind: 'ended', record: reply[1] as Buffer };
    if (kind !== 2) return { kind: 'missing' };
    const data = EnvelopeData.parse(JSON.parse((reply[1] as Buffer).toString()));
    const job = data.jobs.find((j) => j.id === id);
    if (!job) return { kind: 'missing' };
    const processedOn = (reply[2] as Buffer).toString();
    const firstTaken = reply[4] === undefined ? '' : (reply[4] as Buffer).toString();
    return {
      kind: 'pending',
      model: data.model,
      version: data.version,
      job,
      startedAt: processedOn ? Number(processedOn) : null,
      firstTakenAt: firstTaken ? Number(firstTaken) : null,
      gateway: data.gateway,
      where: (reply[3] as Buffer).toString(),
    };
  }

  /**
   * End a job still queued at its Cancel-After deadline as canceled
   * (`deadline_exceeded`): one no worker has taken and whose deadline is
   * past `now`, or one whose envelope was first taken only after the deadline
   * (the worker that took it does not run it, and ends it so only once the
   * envelope's other jobs have run). Null when neither holds; otherwise as
   * `cancel` answers, with the record it wrote. A worker's sweep, a gateway's
   * read, cancel or sweep all end such jobs through here.
   */
  async expirePastDeadline(
    lookup: Extract<JobLookup, { kind: 'pending' }>,
    now: number,
  ): Promise<{ canceled: true; record: Buffer } | { canceled: false; record: Buffer } | { canceled: false; running: true } | null> {
    const { deadline } = lookup.job;
    if (deadline === undefined) return null;
    const queuedAtDeadline = lookup.startedAt === null ? deadline <= now : lookup.firstTakenAt !== null && deadline <= lookup.firstTakenAt;
    if (!queuedAtDeadline) return null;
    const record = encodeRecord(lookup.model, lookup.version, lookup.job, { status: 'canceled', startedAt: null, completedAt: now, error: DEADLINE_EXCEEDED });
    const outcome = await this.cancel(lookup, record, { onlyIfQueued: true, queuedAt: deadline });
    return outcome.canceled ? { canceled: true, record } : outcome;
  }

  /**
   * End a pending job as canceled with `record`, unless it ended meanwhile
   * (then its record). Waiting requests, wherever they are, are told. With
   * `onlyIfQueued`, a job a worker has taken is left to finish: `running`;
   * with `queuedAt` too (a deadline), one whose envelope was first taken at
   * or after that time counts as queued (it was still queued then, and its
   * worker does not run it).
   */
  async cancel(
    lookup: Extract<JobLookup, { kind: 'pending' }>,
    record: Buffer,
    { onlyIfQueued = false, queuedAt }: { onlyIfQueued?: boolean; queuedAt?: number } = {},
  ): Promise<{ canceled: true } | { canceled: false; record: Buffer } | { canceled: false; running: true }> {
    const id = lookup.job.id;
    const k = jobKeys(this.options.prefix, id);
    const reply = await this.redis.inferCancelCommitBuffer(
      k.record,
      k.index,
      k.taggedPrefix,
      id,
      lookup.where,
      record,
      this.options.resultTtlMs,
      lookup.job.wait ? lookup.gateway : '',
      onlyIfQueued ? '1' : '',
      lookup.job.tenant,
      hasCompletedHook(lookup.job) ? '1' : '',
      queuedAt === undefined ? '' : String(queuedAt),
    );
    if (Number(reply[0]) === 1) {
      // The job is canceled whatever becomes of this: its key keeps its 24 h if Redis fails it.
      await this.shortenIdempotencyKeys([lookup.job]).catch(() => undefined);
      return { canceled: true };
    }
    if (Number(reply[0]) === 2) return { canceled: false, running: true };
    return { canceled: false, record: reply[1] as Buffer };
  }

  /** Claim the key for `id`; returns who holds it (`owner` is `id` when this call won). */
  async claimIdempotencyKey(tenant: string, idempotencyKey: string, id: string): Promise<IdempotencyClaim> {
    return parseClaim(await this.redis.inferClaimIdempotencyKey(this.idempotencyRedisKey(tenant, idempotencyKey), id, IDEMPOTENCY_TTL_MS, platformNow()));
  }

  /** The key's claim as it stands, or null: no request of the tenant holds it. */
  async idempotencyClaim(tenant: string, idempotencyKey: string): Promise<IdempotencyClaim | null> {
    const raw = await this.redis.get(this.idempotencyRedisKey(tenant, idempotencyKey));
    return raw === null ? null : parseClaim(raw);
  }

  /**
   * Move the key from `held` (a claim whose job is gone: its record expired, or its request died before
   * enqueueing) to `id`, unless another request took it over first. True when this call did.
   */
  async takeOverIdempotencyKey(tenant: string, idempotencyKey: string, held: IdempotencyClaim, id: string): Promise<boolean> {
    const key = this.idempotencyRedisKey(tenant, idempotencyKey);
    return (await this.redis.inferTakeOverIdempotencyKey(key, held.raw, id, IDEMPOTENCY_TTL_MS, platformNow())) === 1;
  }

  /** Let go of a key claimed for a job that was never enqueued (the queue was full, Redis failed). */
  async releaseIdempotencyKey(tenant: string, idempotencyKey: string, id: string): Promise<void> {
    await this.redis.inferReleaseIdempotencyKey(this.idempotencyRedisKey(tenant, idempotencyKey), id);
  }

  /**
   * Ended jobs that were submitted with an Idempotency-Key: their keys now
   * expire with their records (RESULT_TTL_SECONDS from now, when that is
   * sooner than the 24 h they were claimed for), as a key whose job is gone
   * replays nothing. A key taken over by another job meanwhile is left as
   * it is. Not part of the scripts that end jobs: the keys are in their
   * tenants' hash slots, not the queue's. A failure leaves them their 24 h.
   */
  async shortenIdempotencyKeys(jobs: readonly EnvelopeJob[]): Promise<void> {
    const keyed = jobs.filter((job) => job.idempotency !== undefined);
    if (keyed.length === 0) return;
    const pipe = this.redis.pipeline() as ScriptPipeline;
    for (const job of keyed) pipe.inferShortenIdempotencyKey(this.idempotencyKeyOfDigest(job.tenant, job.idempotency!), job.id, this.options.resultTtlMs);
    const replies = (await pipe.exec()) ?? [];
    const failed = replies.find(([err]) => err);
    if (failed) throw failed[0];
  }

  private idempotencyRedisKey(tenant: string, idempotencyKey: string): string {
    return this.idempotencyKeyOfDigest(tenant, idempotencyDigest(idempotencyKey));
  }

  private idempotencyKeyOfDigest(tenant: string, digest: string): string {
    return `${this.options.prefix}:idempotency:${tenant}:${digest}`;
  }
}

/**
 * An Idempotency-Key as its Redis key names it, and as a job carries it to
 * its worker (EnvelopeJob.idempotency): hashed, so client-chosen keys of any
 * length or charset make safe key names.
 */
export function idempotencyDigest(idempotencyKey: string): string {
  return createHash('sha256').update(idempotencyKey).digest('base64url');
}
