/**
 * RATE_LIMIT_PER_SECOND per API key, one budget shared by every gateway
 * replica, decided without a Redis round trip per request.
 *
 * Why not ask Redis on every request: the platform spends about ten Redis
 * commands per job in all, and a per-request counter (a script plus its
 * INCR/PEXPIRE) would cost a third of that, more than the job's own
 * bookkeeping. So each gateway decides from its own counts, synchronously,
 * and pushes what it accepted to Redis in the background: at most one round
 * trip every `syncMs` for all keys together, and none at all while idle.
 *
 * Overshoot: a gateway allows a request while `shared + unsynced < limit`,
 * where `shared` is the window's total as Redis last told it (its own pushed
 * counts included) and `unsynced` is what it accepted since. Its own accepts
 * are always counted, so a single gateway never exceeds the limit. Across
 * replicas, a window's total exceeds the limit by at most what the other
 * gateways accepted that this one had not heard of yet. A gateway hears of
 * the others only in the answer to its own push, so while it takes requests
 * for a key, that is their counts of the last `syncMs` (plus one round
 * trip); a gateway that has taken none for the key in this window yet has
 * heard nothing, and may accept a whole limit's worth before its first push
 * answers, however much the others spent earlier in the second. The worst
 * case is a burst that reaches N gateways at once, or reaches them one after
 * another within one second: up to N × limit. While Redis is unreachable the same holds with nothing heard at
 * all: each gateway enforces the limit alone (open to a local limit, never
 * to a 5xx).
 *
 * Why fixed windows (the epoch second): every replica names the same window
 * from the platform's clock (Redis's, read through an offset each gateway
 * measures: see platformNow), with no coordination, so the shared state is a single
 * counter per key and second, grown by INCRBY and expiring by itself. A
 * sliding window or token bucket would need timestamps or refill times kept
 * in Redis and read back before deciding. The price is the boundary: a
 * client may get up to twice the limit across the edge of two seconds, which
 * still reads as "N requests a second". On each host's own clock, two
 * gateways a second or more apart would never share a counter.
 */
import { platformNow } from '@infer/contract';
import { createHash } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { ChainableCommander, Redis } from 'ioredis';
import { AppError } from '@infer/errors';
import { awaitAtMost } from '@infer/lifecycle';

/**
 * KEYS[1] the key's counter for one window. ARGV increment, ttl_ms. Returns
 * the window's new total. The push that creates the counter sets its expiry,
 * once: later pushes only add.
 */
const ADD_TO_WINDOW = `
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
if total == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return total
`;

/** The window itself plus two seconds for a late push (and what is left of clock skew between gateways), then the counter goes by itself. */
const WINDOW_TTL_MS = 3_000;

/** `close()` waits this long at most for its last push: Redis may be the very reason the gateway is closing. */
const CLOSE_WAIT_MS = 500;

type ScriptPipeline = ChainableCommander & {
  inferRateLimitAdd(key: string, increment: number, ttlMs: number): ChainableCommander;
};

export interface SharedRateLimiterOptions {
  /** Commands connection; its command timeout bounds how long a sync can hang. */
  redis: Redis;
  /** The platform's key prefix (QUEUE_PREFIX). */
  prefix: string;
  /** Requests a key may make in one second, across every gateway. */
  perSecond: number;
  /**
   * Push accepted counts to Redis at most this often, and only while there
   * are some: also the staleness of what one gateway knows of the others.
   * @default 50
   */
  syncMs?: number;
  /** The time in ms since the epoch; a test drives windows through it. @default platformNow (Redis's clock) */
  now?: () => number;
  /** A sync failed (Redis down, timed out); called on every failed try, so throttle what it logs. */
  onError?: (err: unknown) => void;
}

export type RateLimitVerdict = { ok: true } | { ok: false; retryAfterSeconds: number };

/** A key's counts in the current window. */
interface WindowCount {
  /** The window's total across gateways as of the last sync, this gateway's pushed counts included. */
  shared: number;
  /** Accepted here and not yet added in Redis (those of a sync in flight included, until it answers). */
  unsynced: number;
}

/**
 * Per-key request budget per epoch second, decided locally and shared
 * through Redis in the background. See the header comment for the bounds.
 */
export class SharedRateLimiter {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly perSecond: number;
  private readonly syncMs: number;
  private readonly now: () => number;
  private readonly onError: (err: unknown) => void;

  /** The epoch second `counts` is for; older windows are forgotten whole. */
  private window = Number.NaN;
  /**
   * By API key digest (`req.apiKeyDigest`, never the key itself): the keys
   * seen in `window`. The Redis counter is named by a hash of the digest (bucketOf).
   */
  private counts = new Map<string, WindowCount>();
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(options: SharedRateLimiterOptions) {
    if (!(options.perSecond >= 1)) throw new Error('perSecond must be at least 1');
    this.redis = options.redis;
    this.prefix = options.prefix;
    this.perSecond = options.perSecond;
    this.syncMs = Math.max(0, options.syncMs ?? 50);
    this.now = options.now ?? platformNow;
    this.onError = options.onError ?? (() => {});
    if (!('inferRateLimitAdd' in this.redis)) this.redis.defineCommand('inferRateLimitAdd', { numberOfKeys: 1, lua: ADD_TO_WINDOW });
  }

  /** Count one request for `apiKey` if the key has budget left in this second. Never touches Redis. */
  consume(apiKey: string): RateLimitVerdict {
    const now = this.now();
    this.roll(now);
    let count = this.counts.get(apiKey);
    if (!count) {
      count = { shared: 0, unsynced: 0 };
      this.counts.set(apiKey, count);
    }
    if (count.shared + count.unsynced >= this.perSecond) {
      const nextWindowMs = (Math.floor(now / 1000) + 1) * 1000;
      return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((nextWindowMs - now) / 1000)) };
    }
    count.unsynced++;
    this.arm();
    return { ok: true };
  }

  /**
   * Push every unsynced count now, after any sync in flight; resolves once
   * Redis answered (or failed, reported through `onError`). For tests and
   * `close()`; the gateway leaves syncing to the timer.
   */
  async flush(): Promise<void> {
    while (this.syncing) await this.syncing;
    await this.startSync();
  }

  /** Stop the timer and make one last, bounded push. Idempotent; never rejects. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.disarm();
      await awaitAtMost(this.flush(), CLOSE_WAIT_MS);
    })();
    return this.closing;
  }

  /** Forget every window older than the one `now` is in (their counts no longer decide anything). */
  private roll(now: number): void {
    const window = Math.floor(now / 1000);
    if (window === this.window) return;
    this.window = window;
    this.counts = new Map();
  }

  /** Called on every accept, so only the cheap checks: a timer or a sync already covers the new count. */
  private arm(): void {
    if (this.timer !== undefined || this.syncing || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.startSync();
    }, this.syncMs);
    // Never what keeps a process alive: the server does that, and close() pushes the rest.
    this.timer.unref();
  }

  private disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The only place a sync starts, so one is never in flight twice. */
  private startSync(): Promise<void> {
    this.disarm();
    const running = this.sync().finally(() => {
      this.syncing = undefined;
      // Counts accepted during the round trip, or kept after a failure: the next push, syncMs from now.
      if (this.hasUnsynced()) this.arm();
    });
    this.syncing = running;
    return running;
  }

  private hasUnsynced(): boolean {
    this.roll(this.now());
    for (const count of this.counts.values()) if (count.unsynced > 0) return true;
    return false;
  }

  /** One pipeline: per key with unsynced counts, add them to the window's counter and read back its total. */
  private async sync(): Promise<void> {
    this.roll(this.now());
    const window = this.window;
    const pushes: Array<{ apiKey: string; count: WindowCount; pushed: number }> = [];
    for (const [apiKey, count] of this.counts) {
      if (count.unsynced > 0) pushes.push({ apiKey, count, pushed: count.unsynced });
    }
    if (pushes.length === 0) return;
    const pipe = this.redis.pipeline() as ScriptPipeline;
    for (const { apiKey, pushed } of pushes) {
      pipe.inferRateLimitAdd(`${this.prefix}:ratelimit:${bucketOf(apiKey)}:${window}`, pushed, WINDOW_TTL_MS);
    }
    let failure: unknown;
    try {
      const replies = (await pipe.exec()) ?? [];
      pushes.forEach(({ count, pushed }, i) => {
        const [err, total] = replies[i] ?? [new Error('no reply to a rate limit push')];
        if (err) {
          // Kept for the next try. A push that timed out may still have landed:
          // then it counts twice, which only errs towards refusing.
          failure ??= err;
          return;
        }
        count.unsynced -= pushed;
        // A window only grows; max() keeps a lost counter (expired, deleted) from handing out budget again.
        count.shared = Math.max(count.shared, Number(total));
      });
    } catch (err) {
      failure = err;
    }
    // If the window rolled meanwhile, the counts updated above belong to a forgotten map: nothing to undo.
    if (failure !== undefined) this.report(failure);
  }

  private report(err: unknown): void {
    try {
      this.onError(err);
    } catch {
      // A throwing logger must not stop the limiter (or reject close()).
    }
  }
}

/**
 * The middleware: RATE_LIMIT_PER_SECOND per API key (per client address for
 * a request without one), 429 with Retry-After past it.
 */
export function rateLimitPerKey(limiter: SharedRateLimiter, perSecond: number): RequestHandler {
  return (req, _res, next) => next(overRateLimit(limiter, req.apiKeyDigest ?? req.ip ?? 'anonymous', perSecond));
}

/** Count one request of `apiKey`: the 429 to answer when it is over its budget, else undefined. */
export function overRateLimit(limiter: SharedRateLimiter, apiKey: string, perSecond: number): AppError | undefined {
  const verdict = limiter.consume(apiKey);
  if (verdict.ok) return undefined;
  return new AppError(429, 'rate_limited', `More than ${perSecond} requests a second for this API key`, { retryAfterSeconds: verdict.retryAfterSeconds });
}

/** The key's bucket name in Redis: a hash, so API keys never appear in key names. */
function bucketOf(apiKey: string): string {
  return createHash('sha256').update(apiKey).digest('base64url').slice(0, 22);
}
