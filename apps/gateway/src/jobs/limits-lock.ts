import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { setTimeout as delay } from 'node:timers/promises';
import { AppError } from '@infer/errors';

/** Lets go of the lock if this holder still has it (it may have expired and gone to another). */
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

export interface LimitsLockOptions {
  redis: Redis;
  /** The lock's key: one for every gateway of the deployment. */
  key: string;
  /** How long a holder keeps it at most, should it die holding it. @default 2000 */
  holdMs?: number;
  /** How long to wait for it before giving up (503 `unavailable`). @default 5000 */
  waitMs?: number;
}

/**
 * The lock that every gateway takes to write an envelope near MAX_QUEUE_DEPTH
 * or TENANT_MAX_QUEUED: the limits are over every model version's queue, and
 * each queue's script counts only its own (its keys are in its queue's hash
 * slot), so a count over all queues is exact only while no other gateway
 * writes near the limit between its read and its write. Far from the limits
 * no lock is taken (see EnvelopeWriter).
 *
 * Within one gateway the holders queue up in order; between gateways the
 * lock is a Redis key taken with SET NX PX, retried with a short backoff
 * (what one holder does with it takes a few round trips).
 */
export class LimitsLock {
  private tail: Promise<void> = Promise.resolve();
  private readonly release: (key: string, token: string) => Promise<number>;

  constructor(private readonly options: LimitsLockOptions) {
    const redis = options.redis as Redis & { inferReleaseLimitsLock?: (key: string, token: string) => Promise<number> };
    if (!redis.inferReleaseLimitsLock) redis.defineCommand('inferReleaseLimitsLock', { numberOfKeys: 1, lua: RELEASE });
    this.release = (key, token) => redis.inferReleaseLimitsLock!(key, token);
  }

  /** Run `fn` holding the lock. */
  async hold<T>(fn: () => Promise<T>): Promise<T> {
    const before = this.tail;
    let done!: () => void;
    this.tail = new Promise<void>((resolve) => (done = resolve));
    try {
      await before;
      const token = await this.acquire();
      try {
        return await fn();
      } finally {
        // Should the release fail (Redis away), the key expires by itself.
        await this.release(this.options.key, token).catch(() => undefined);
      }
    } finally {
      done();
    }
  }

  private async acquire(): Promise<string> {
    const token = randomUUID();
    const holdMs = this.options.holdMs ?? 2000;
    const giveUpAt = performance.now() + (this.options.waitMs ?? 5000);
    for (let backoff = 1; ; backoff = Math.min(backoff * 2, 20)) {
      if ((await this.options.redis.set(this.options.key, token, 'PX', holdMs, 'NX')) === 'OK') return token;
      if (performance.now() >= giveUpAt) {
        throw new AppError(503, 'unavailable', 'The queues are near their limit and the gateways could not take turns counting them in time; retry', { retryAfterSeconds: 1 });
      }
      await delay(backoff);
    }
  }
}
