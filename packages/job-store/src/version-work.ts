import type { Redis } from 'ioredis';
import { bulkQueue, interactiveKeys } from '@infer/contract';

/**
 * Whether a model version's queues hold work: an interactive envelope or a
 * bulk chunk waiting or running, on any worker. What a draining version is
 * kept for (the workers serve it until this is false, and the gateways list
 * it as draining meanwhile). One transaction; an error reply counts as work,
 * so a version is never let go on a look that could not see.
 */
export async function versionHasQueuedWork(redis: Redis, prefix: string, model: string, version: string): Promise<boolean> {
  const k = interactiveKeys(prefix, model, version);
  const b = bulkQueue(prefix, model, version);
  const bulk = `${b.prefix}:${b.name}:`;
  const counts = (await redis
    .multi()
    .llen(k.wait)
    .llen(k.active)
    .llen(bulk + 'wait')
    .llen(bulk + 'active')
    .zcard(bulk + 'delayed')
    .zcard(bulk + 'prioritized')
    .exec()) as Array<[Error | null, unknown]>;
  return counts.some(([err, n]) => err !== null || Number(n ?? 0) > 0);
}
