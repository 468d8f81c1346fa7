import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';

/**
 * The shared test Redis and the tests' keys in it. A module of its own,
 * light (ioredis only), for tests that need these without ./platform.js,
 * which loads the whole gateway and worker; platform.js re-exports them.
 */
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A unique key prefix per test run: tests never touch keys they did not create. */
export function uniquePrefix(label = 't'): string {
  return `test-${label}-${randomUUID().slice(0, 8)}`;
}

/**
 * Delete every key under `prefix` (SCAN, never FLUSH). One UNLINK a key:
 * a multi-key UNLINK is refused on Redis Cluster when its keys hash to
 * different slots (test/cluster-keys.test.ts runs on one).
 */
export async function deletePrefix(redisUrl: string, prefix: string): Promise<void> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) {
        const pipe = redis.pipeline();
        for (const key of keys) pipe.unlink(key);
        await pipe.exec();
      }
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** A key under a test's prefix, as a lifetime check sees it. */
export interface KeyInfo {
  key: string;
  type: string;
  /** PTTL: -1 without a TTL. */
  pttl: number;
  /** Its length by type (STRLEN, HLEN, LLEN, SCARD, ZCARD, XLEN). */
  size: number;
}

/** Every key under `prefix`, with its type, PTTL and size. */
export async function listKeys(redis: Redis, prefix: string): Promise<KeyInfo[]> {
  const out: KeyInfo[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    for (const key of found) {
      const [type, pttl] = await Promise.all([redis.type(key), redis.pttl(key)]);
      let size = 0;
      if (type === 'string') size = await redis.strlen(key);
      else if (type === 'hash') size = await redis.hlen(key);
      else if (type === 'list') size = await redis.llen(key);
      else if (type === 'set') size = await redis.scard(key);
      else if (type === 'zset') size = await redis.zcard(key);
      else if (type === 'stream') size = await redis.xlen(key);
      out.push({ key, type, pttl, size });
    }
  } while (cursor !== '0');
  return out.sort((a, b) => a.key.localeCompare(b.key));
}
