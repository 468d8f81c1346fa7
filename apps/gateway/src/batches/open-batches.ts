import type { Redis } from 'ioredis';
import { isBatchEnded, type BatchStatus, platformNow } from '@infer/contract';
import { AppError } from '@infer/errors';

/**
 * KEYS[1] the tenant's open batches. ARGV id, now, limit, ttl_ms. Returns 1
 * when `id` was added, 0 when the tenant already has `limit` open. One
 * script, so two uploads racing for the last slot cannot both get it.
 */
const RESERVE = `
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`;

/**
 * A reservation whose batch has no record yet is an upload that has not
 * built its first chunk (the record is written with it): counted for this
 * long, then taken for an upload whose gateway died before releasing it.
 * A slow upload older than this without a chunk stops counting; a stale one
 * holds a slot no longer than this.
 */
const UPLOAD_GRACE_MS = 10 * 60_000;

/** A tenant at its limit waits for a batch to end: minutes, not seconds. */
const RETRY_AFTER_SECONDS = 30;

type ScriptRedis = Redis & { inferOpenBatchReserve(key: string, id: string, now: number, limit: number, ttlMs: number): Promise<number> };

export interface OpenBatchesOptions {
  /** Commands connection. */
  redis: Redis;
  /** QUEUE_PREFIX. */
  prefix: string;
  /** TENANT_MAX_OPEN_BATCHES. */
  limit: number;
  /** A batch's status, null when it has no record (not created yet, discarded, or expired). */
  status: (id: string) => Promise<BatchStatus | null>;
  /** How long the set outlives its last reservation: the longest a batch can live. */
  ttlMs: number;
  now?: () => number;
}

/**
 * TENANT_MAX_OPEN_BATCHES: how many batches one tenant may have open at
 * once, from the start of the upload until the batch ends. Each tenant has
 * a sorted set of its open batch ids (by when the upload started), shared
 * by every gateway. An upload takes a slot before its body is read (so a
 * tenant cannot hold a thousand uploads open either) and gives it back if
 * it fails. Nothing removes a batch when it ends: the worker that completes
 * it, or the request that cancels it, would have to, on another slot of a
 * cluster, and a crash between the two would leak the slot for good. So a
 * tenant found at its limit has its set checked against the batches'
 * records, ended ones dropped, and gets the slot if one came free: at most
 * `limit` status reads, and only when the limit is reached. A batch whose
 * record was written and is gone (expired after it ended) frees its slot at
 * once: the upload marks its reservation when it writes the record.
 */
export class OpenBatches {
  private readonly redis: ScriptRedis;
  private readonly now: () => number;

  constructor(private readonly options: OpenBatchesOptions) {
    if (!(options.limit >= 1)) throw new Error('limit must be at least 1');
    if (!('inferOpenBatchReserve' in options.redis)) options.redis.defineCommand('inferOpenBatchReserve', { numberOfKeys: 1, lua: RESERVE });
    this.redis = options.redis as ScriptRedis;
    this.now = options.now ?? platformNow;
  }

  /** The tenant's set (tenant names hold no `:`, so no tenant's key is another's). */
  key(tenant: string): string {
    return `${this.options.prefix}:batches:${tenant}:open`;
  }

  /** Take a slot for batch `id`, or throw 429 `quota_exceeded` with Retry-After. */
  async reserve(tenant: string, id: string): Promise<void> {
    if (await this.tryReserve(tenant, id)) return;
    await this.prune(tenant);
    if (await this.tryReserve(tenant, id)) return;
    throw new AppError(
      429,
      'quota_exceeded',
      `This tenant has ${this.options.limit} batches open (uploading, queued or running), its limit; one has to end (or be canceled) first`,
      { retryAfterSeconds: RETRY_AFTER_SECONDS },
    );
  }

  /**
   * The batch's record is written: from now on, a record missing means the batch is gone (it ended and
   * expired, or was discarded), and its slot is free at once. The score turns negative: (-)the time.
   */
  async recorded(tenant: string, id: string): Promise<void> {
    await this.redis.zadd(this.key(tenant), 'XX', -this.now(), id);
  }

  /** Give a slot back: the upload failed and its batch was discarded. Best effort: pruning catches what this misses. */
  async release(tenant: string, id: string): Promise<void> {
    await this.redis.zrem(this.key(tenant), id);
  }

  private async tryReserve(tenant: string, id: string): Promise<boolean> {
    return (await this.redis.inferOpenBatchReserve(this.key(tenant), id, this.now(), this.options.limit, this.options.ttlMs)) === 1;
  }

  /** Drop the tenant's ended batches, and reservations without a record past the grace. */
  private async prune(tenant: string): Promise<void> {
    const key = this.key(tenant);
    const flat = await this.redis.zrange(key, '0', '-1', 'WITHSCORES');
    const entries: Array<{ id: string; since: number }> = [];
    for (let i = 0; i + 1 < flat.length; i += 2) entries.push({ id: flat[i]!, since: Number(flat[i + 1]) });
    const statuses = await Promise.all(entries.map((e) => this.options.status(e.id)));
    const now = this.now();
    const done = entries.filter((e, i) => {
      const status = statuses[i];
      if (status) return isBatchEnded(status);
      // No record: gone, if it had one (recorded() made its score negative); else an upload that has not
      // written its first chunk, counted for the grace.
      return e.since < 0 || now - e.since > UPLOAD_GRACE_MS;
    });
    if (done.length > 0) await this.redis.zrem(key, ...done.map((e) => e.id));
  }
}
