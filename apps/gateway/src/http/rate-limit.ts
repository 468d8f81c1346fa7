import { createHash } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { AppError } from '@infer/errors';

/**
 * RATE_LIMIT_PER_SECOND per API key, counted in Redis so that every gateway
 * replica shares one budget. Once a key is over its budget for the current
 * second, the rest of that second is refused from memory without asking Redis.
 */
export function rateLimitPerKey(redis: Redis, prefix: string, perSecond: number): RequestHandler {
  const limiter = new RateLimiterRedis({
    storeClient: redis,
    keyPrefix: `${prefix}:ratelimit`,
    points: perSecond,
    duration: 1,
    inMemoryBlockOnConsumed: perSecond,
    inMemoryBlockDuration: 1,
  });
  return (req, res, next) => {
    limiter.consume(bucketOf(req.apiKey ?? req.ip ?? 'anonymous')).then(
      () => next(),
      (rejection: unknown) => {
        if (rejection instanceof RateLimiterRes) {
          const seconds = Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
          next(new AppError(429, 'rate_limited', `More than ${perSecond} requests a second for this API key`, { retryAfterSeconds: seconds }));
        } else {
          next(rejection);
        }
      },
    );
  };
}

/** The key's bucket name in Redis: a hash, so API keys never appear in key names. */
function bucketOf(apiKey: string): string {
  return createHash('sha256').update(apiKey).digest('base64url').slice(0, 22);
}
