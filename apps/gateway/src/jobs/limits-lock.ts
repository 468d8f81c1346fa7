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
 * The lock a gateway takes to move the queues' allowances of MAX_QUEUE_DEPTH
 * or TENANT_MAX_QUEUED (see EnvelopeWriter): each queue's script keeps its
 * count within its allowance, and the allowances add up to at most the
 * limit only while one gateway at a time reads and changes them. An envelope
 * that fits its queue's allowance takes no lock.
 *
 * Within one gateway the holders queue up in order; between gateways the
 * lock is a Redis key taken with SET NX PX, retried with a short backoff
 * (what one holder does with it takes a few round trips). A holder that
 * stalls past `holdMs` loses it to the next; it checks that it still holds
 * it before each write (`stillHeld`), so two could move allowances at once
 * only if the lock lapsed between that check and the write after it.
 */
export class LimitsLock {
  private tail: Promise<void> = Promise.resolve();
  private readonly release: (key: string, token: string) => Promise<number>;

  constructor(private readonly options: LimitsLockOptions) {
    const redis = options.redis as Redis & { inferReleaseLimitsLock?: (key: string, token: string) => Promise<number> };
    if (!redis.inferReleaseLimitsLock) redis.defineCommand('inferReleaseLimitsLock', { numberOfKeys: 1, lua: RELEASE });
    this.release = (key, token) => redis.inferReleaseLimitsLock!(key, token);
  }

  /**
   * Run `fn` holding the lock; 503 `unavailable` when it cannot be had
   * within `waitMs`. `fn` is handed `stillHeld`, to call before each write
   * it makes: it throws 503 `unavailable` once the lock has lapsed (this
   * holder stalled past `holdMs`), so a holder that lost the lock to another
   * moves nothing more on what it read before.
   */
  async hold<T>(fn: (stillHeld: () => Promise<void>) => Promise<T>): Promise<T> {
    const giveUpAt = performance.now() + (this.options.waitMs ?? 5000);
    const before = this.tail;
    let done!: () => void;
    this.tail = new Promise<void>((resolve) => (done = resolve));
    try {
      // The turn in this process counts against the wait too. (Giving up here lets the next one in this
      // process go on to the Redis key, which still admits one holder at a time.)
      await this.within(before, giveUpAt);
      const token = await this.acquire(giveUpAt);
      const stillHeld = async () => {
        if ((await this.options.redis.get(this.options.key)) !== token) throw lost();
      };
      try {
        return await fn(stillHeld);
      } finally {
        // Should the release fail (Redis away), the key expires by itself.
        await this.release(this.options.key, token).catch(() => undefined);
      }
    } finally {
      done();
    }
  }

  private async within(turn: Promise<void>, giveUpAt: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([turn, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(tooLong()), Math.max(0, giveUpAt - performance.now()))))]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async acquire(giveUpAt: number): Promise<string> {
    const token = randomUUID();
    const holdMs = this.options.holdMs ?? 2000;
    try {
      for (let backoff = 1; ; backoff = Math.min(backoff * 2, 20)) {
        if ((await this.options.redis.set(this.options.key, token, 'PX', holdMs, 'NX')) === 'OK') return token;
        if (performance.now() >= giveUpAt) throw tooLong();
        await delay(backoff);
      }
    } catch (err) {
      // A SET that timed out here may still run in Redis later: this release, sent after it on the same
      // connection, runs after it, so no lock is left behind that nobody holds.
      void this.release(this.options.key, token).catch(() => undefined);
      throw err;
    }
  }
}

function lost(): AppError {
  return new AppError(503, 'unavailable', 'This gateway stalled while making room in the queues and let the limits lock lapse; retry', { retryAfterSeconds: 1 });
}

function tooLong(): AppError {
  return new AppError(503, 'unavailable', 'The queues are near their limits and the gateways could not take turns making room in time; retry', { retryAfterSeconds: 1 });
}
