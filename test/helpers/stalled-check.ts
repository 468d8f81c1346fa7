import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { QueueRef } from '@infer/contract';

/** BullMQ's stalled check on a queue, as every worker of it runs it, started by a test. */
export interface StalledCheck {
  /** Ids of the jobs it found stalled, in order. */
  readonly stalled: string[];
  close(): Promise<void>;
}

/**
 * Run BullMQ's stalled check on `queue` (its own connection, no processor):
 * it puts back jobs whose lock lapsed (their worker died or hung), counting a
 * stall against each, and fails them past `maxStalledCount`. The defaults
 * are short, for tests whose takes hold 300 ms locks.
 */
export function startStalledCheck(redisUrl: string, queue: QueueRef, options: { lockMs?: number; intervalMs?: number; maxStalledCount?: number } = {}): StalledCheck {
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const checker = new Worker(queue.name, null, {
    connection,
    prefix: queue.prefix,
    autorun: false,
    lockDuration: options.lockMs ?? 300,
    stalledInterval: options.intervalMs ?? 100,
    maxStalledCount: options.maxStalledCount ?? 2,
  });
  const stalled: string[] = [];
  checker.on('stalled', (id) => stalled.push(id));
  // Its commands fail while a test's Redis is away: not an unhandled 'error' event.
  checker.on('error', () => undefined);
  void checker.startStalledCheckTimer();
  return {
    stalled,
    close: async () => {
      await checker.close(true);
      connection.disconnect();
    },
  };
}
