import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { inferQueueName } from '@infer/contract';
import { AppError } from '@infer/errors';

export interface QueueRegistryOptions {
  connection: Redis;
  prefix: string;
  maxQueueDepth: number;
  /** How stale the depth figure may be; each refresh costs one round trip per queue. @default 250 */
  depthCacheMs?: number;
}

/**
 * The gateway's BullMQ producers, one per model version, and the
 * backpressure check. Counting the queues on every submit would double the
 * Redis work of a submit, so the depth is refreshed at most every
 * `depthCacheMs` and a burst can overshoot the limit by that much.
 */
export class QueueRegistry {
  private readonly queues = new Map<string, Queue>();
  private depth = 0;
  private depthAt = -Infinity;
  private refreshing: Promise<void> | undefined;

  constructor(private readonly options: QueueRegistryOptions) {}

  get(model: string, version: string): Queue {
    const name = inferQueueName(model, version);
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new Queue(name, { connection: this.options.connection, prefix: this.options.prefix });
      queue.on('error', () => {
        /* surfaced through the failing call; avoid an unhandled 'error' event */
      });
      this.queues.set(name, queue);
    }
    return queue;
  }

  /** Throws 503 queue_full when the queued instances are over the limit. */
  async assertRoom(): Promise<void> {
    const maxAge = this.options.depthCacheMs ?? 250;
    if (performance.now() - this.depthAt > maxAge) {
      this.refreshing ??= this.refreshDepth().finally(() => (this.refreshing = undefined));
      await this.refreshing;
    }
    if (this.depth >= this.options.maxQueueDepth) {
      throw new AppError(503, 'queue_full', `The queue holds ${this.depth} instances, over its limit of ${this.options.maxQueueDepth}; retry later`, {
        retryAfterSeconds: 5,
      });
    }
  }

  /** Queued (not yet running) jobs across every known queue. */
  async queuedCount(): Promise<number> {
    const counts = await Promise.all(
      [...this.queues.values()].map((q) => q.getJobCounts('waiting', 'prioritized', 'delayed')),
    );
    return counts.reduce((sum, c) => sum + (c.waiting ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0), 0);
  }

  private async refreshDepth(): Promise<void> {
    this.depth = await this.queuedCount();
    this.depthAt = performance.now();
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.queues.values()].map((q) => q.close()));
  }
}
