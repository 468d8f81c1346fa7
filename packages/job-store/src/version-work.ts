import type { Redis } from 'ioredis';
import { bulkQueue, interactiveKeys } from '@infer/contract';
import { registeredQueues } from './envelope-queue.js';

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

/**
 * `known` (the versions a gateway has loaded) and every other version in the
 * registry of interactive queues whose queues still hold work: a version
 * removed from the repository, or never loaded by this gateway, keeps its
 * queues until workers drain them, and every gateway shows them alike (its
 * queue metrics, its dashboard). `known` first, in its order.
 */
export async function versionsWithQueues(
  redis: Redis,
  prefix: string,
  known: ReadonlyArray<{ name: string; version: string }>,
): Promise<Array<{ name: string; version: string }>> {
  const byMember = new Map(known.map((v) => [`${v.name}\0${v.version}`, { name: v.name, version: v.version }]));
  const others = (await registeredQueues(redis, prefix)).filter((v) => !byMember.has(`${v.name}\0${v.version}`));
  if (others.length === 0) return [...byMember.values()];
  const working = await Promise.all(others.map((v) => versionHasQueuedWork(redis, prefix, v.name, v.version)));
  others.forEach((v, i) => {
    if (working[i]) byMember.set(`${v.name}\0${v.version}`, v);
  });
  return [...byMember.values()];
}
