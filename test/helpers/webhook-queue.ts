import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { webhookQueue } from '@infer/contract';
import { TEST_REDIS_URL } from './redis-keys.js';

/** Nothing waiting, delayed or running on the webhook queue under `prefix`: no further attempt can come. */
export async function webhookQueueIdle(prefix: string): Promise<boolean> {
  const connection = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  const queue = new Queue(webhookQueue(prefix).name, { connection, prefix: webhookQueue(prefix).prefix });
  try {
    const c = await queue.getJobCounts('waiting', 'delayed', 'active', 'prioritized');
    return Object.values(c).every((n) => n === 0);
  } finally {
    await queue.close();
    connection.disconnect();
  }
}
