import type { Redis } from 'ioredis';

/** Batch uploads stop above this share of Redis's maxmemory: what is left is the queues' room to drain. */
export const UPLOAD_MEMORY_LIMIT = 0.9;

/** How long one reading of Redis's memory serves (uploads ask per chunk). */
const FRESH_MS = 1000;

/**
 * Whether Redis is nearly full, for batch uploads. A full Redis (noeviction)
 * refuses BullMQ's own scripts, which take and complete batch chunks, so
 * batch inputs that filled it would never drain (interactive jobs drain
 * past the limit: their scripts are allowed to). Uploads therefore stop at
 * UPLOAD_MEMORY_LIMIT of `maxmemory`: batch inputs alone can never fill it.
 * Read with `INFO memory` at most once a second, and only while uploads
 * ask: an idle gateway sends nothing. No `maxmemory` set: never full.
 */
export class RedisMemory {
  private readAt = -Infinity;
  private share = 0;
  private reading: Promise<void> | undefined;

  constructor(private readonly redis: Redis) {}

  /** True when Redis holds more than UPLOAD_MEMORY_LIMIT of its maxmemory (as read within the last second). */
  async nearlyFull(): Promise<boolean> {
    if (performance.now() - this.readAt > FRESH_MS) {
      this.reading ??= this.read().finally(() => (this.reading = undefined));
      await this.reading;
    }
    return this.share > UPLOAD_MEMORY_LIMIT;
  }

  private async read(): Promise<void> {
    const info = await this.redis.info('memory');
    const field = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? 0);
    const max = field('maxmemory');
    this.share = max > 0 ? field('used_memory') / max : 0;
    this.readAt = performance.now();
  }
}
