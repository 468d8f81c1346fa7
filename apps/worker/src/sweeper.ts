import type { Redis } from 'ioredis';
import { ABANDONED_UPLOAD_MS, bulkQueue, chunkJobId, interactiveKeys, queueMember, platformNow } from '@infer/contract';
import type { BatchStore } from '@infer/batch-store';
import { reconcileQueuedCounts, registeredQueues } from '@infer/job-store';
import type { Logger } from '@infer/logger';
import type { ModelVersion } from '@infer/models';

/** Job indexes are swept once every this many sweeps (10 minutes at the default interval). */
const INDEX_EVERY = 20;

export interface SweeperOptions {
  redis: Redis;
  prefix: string;
  batchStore: BatchStore;
  /** The model versions this worker serves (now: they come and go): their job indexes are swept. */
  served: readonly ModelVersion[] | (() => readonly ModelVersion[]);
  logger: Logger;
  /** How often a sweep may run, fleet-wide. @default 30_000 */
  everyMs?: number;
  /** Unended batches looked at per sweep, oldest first. @default 200 */
  batchesPerSweep?: number;
  /** The clock an upload's age is read with. @default platformNow (Redis's clock) */
  now?: () => number;
  /** Told the rows of each chunk the sweep ended as `lost` (failed), for the bulk row metrics. */
  onLostRows?: (model: { name: string; version: string }, rows: number) => void;
}

/** What one sweep ended or dropped. */
export interface SweepOutcome {
  /** Chunks of sealed batches whose queue job was gone: their rows failed (`lost`). */
  lostChunks: number;
  /** Job index entries whose envelope was gone. */
  droppedJobs: number;
  /** Unsealed batches past ABANDONED_UPLOAD_MS, discarded. */
  abandonedUploads: number;
  /** Queued instances the counters of empty queues still held (envelopes removed by hand), let go. */
  uncountedInstances: number;
}

/**
 * The last line of "every job ends": a periodic look for work whose queue
 * entry no longer exists, which nothing else would ever end.
 *
 * - A sealed batch's chunk that has not ended and whose BullMQ job is gone
 *   (removed from the dashboard, failed for good while Redis refused the
 *   rows' write): its rows end as failed (`lost`), so the batch completes.
 * - A batch still unsealed ABANDONED_UPLOAD_MS after its record was
 *   written: an upload whose gateway died (no request lasts that long), whose
 *   client never got its id. It is discarded, as a failed upload is, and its
 *   open-batch slot comes free.
 * - A batch that ended but whose `batch.completed` was never queued (the
 *   process that ended it died first): BatchStore.unended tells of it again.
 * - A job index entry whose envelope is gone (deleted by hand, an
 *   obliterated queue): the job can no longer be read or run; the entry is
 *   dropped and counted in the log.
 *
 * Every worker runs the timer; one sweep runs per interval across the fleet
 * (a lock in Redis), and each step checks again right before it acts. Job
 * indexes can be long (a million queued jobs) and lose entries only by hand,
 * so they are swept once every INDEX_EVERY sweeps.
 */
export class Sweeper {
  private readonly timer: NodeJS.Timeout;
  private running: Promise<void> | undefined;
  private sweeps = 0;
  private readonly now: () => number;

  constructor(private readonly options: SweeperOptions) {
    this.now = options.now ?? platformNow;
    const every = options.everyMs ?? 30_000;
    this.timer = setInterval(() => void this.tick(every), every);
    this.timer.unref();
  }

  private async tick(every: number): Promise<void> {
    if (this.running) return;
    this.running = (async () => {
      try {
        const lock = `${this.options.prefix}:sweep:lock`;
        if ((await this.options.redis.set(lock, '1', 'PX', Math.max(1000, every - 500), 'NX')) !== 'OK') return;
        await this.sweep();
      } catch (err) {
        this.options.logger.warn({ err: (err as Error).message }, 'sweep failed; the next one tries again');
      }
    })().finally(() => (this.running = undefined));
    await this.running;
  }

  /** One sweep, now (tests call it directly). Resolves with what it ended and dropped. */
  async sweep({ indexes = this.sweeps % INDEX_EVERY === 0 }: { indexes?: boolean } = {}): Promise<SweepOutcome> {
    this.sweeps++;
    const { lostChunks, abandonedUploads } = await this.sweepBatches();
    const droppedJobs = indexes ? await this.sweepJobIndexes() : 0;
    const uncountedInstances = await this.reconcileQueuedCounts();
    if (lostChunks || droppedJobs || uncountedInstances) this.options.logger.warn({ lostChunks, droppedJobs, uncountedInstances }, 'sweep ended work whose queue entries were gone');
    if (abandonedUploads) this.options.logger.warn({ abandonedUploads }, 'sweep discarded batches whose upload never finished (their gateway died)');
    return { lostChunks, droppedJobs, abandonedUploads, uncountedInstances };
  }

  /**
   * Every interactive queue with nothing waiting has its queued counts at 0
   * (see reconcileQueuedCounts): each one in the registry the gateways keep,
   * served by this worker or not (a version unloaded, one served only by
   * workers that do not win the sweep's lock), since every gateway counts
   * them all; and the served ones, should the registry have been lost.
   */
  private async reconcileQueuedCounts(): Promise<number> {
    const { redis, prefix } = this.options;
    const queues = new Map(this.servedNow().map((m) => [queueMember(m.name, m.version), { name: m.name, version: m.version }]));
    for (const q of await registeredQueues(redis, prefix)) queues.set(queueMember(q.name, q.version), q);
    let sum = 0;
    for (const q of queues.values()) sum += await reconcileQueuedCounts(redis, prefix, q.name, q.version);
    return sum;
  }

  private servedNow(): readonly ModelVersion[] {
    return typeof this.options.served === 'function' ? this.options.served() : this.options.served;
  }

  private async sweepBatches(): Promise<{ lostChunks: number; abandonedUploads: number }> {
    const { redis, prefix, batchStore } = this.options;
    let lost = 0;
    let abandoned = 0;
    for (const { record, pending } of await batchStore.unended(this.options.batchesPerSweep ?? 200)) {
      if (!record.sealed) {
        // An upload outlasting any request's time limit: its gateway died mid-upload, and no client has its
        // id. It goes as the upload would have on a failure (its chunks left in the queue are skipped).
        if (this.now() - record.createdAt > ABANDONED_UPLOAD_MS) {
          await batchStore.discard(record.id, record.tenant);
          abandoned++;
        }
        // An upload still being read registers a chunk before it enqueues it: only a sealed batch is complete in the queue.
        continue;
      }
      if (pending.size === 0) continue;
      const queue = bulkQueue(prefix, record.model, record.version);
      for (const [chunk, manifest] of pending) {
        if (await redis.exists(`${queue.prefix}:${queue.name}:${chunkJobId(record.id, chunk)}`)) continue;
        const outcome = await batchStore.failChunk(record.id, chunk, manifest, { code: 'lost', message: "the chunk's queue job disappeared before it ran" }, this.now());
        if (outcome !== 'duplicate' && outcome !== 'ended' && outcome !== 'missing') {
          lost++;
          // Every row of the chunk ends now, its items that failed at upload too.
          this.options.onLostRows?.({ name: record.model, version: record.version }, manifest.count);
        }
      }
    }
    return { lostChunks: lost, abandonedUploads: abandoned };
  }

  private async sweepJobIndexes(): Promise<number> {
    const { redis, prefix } = this.options;
    let dropped = 0;
    const indexes = new Map(this.servedNow().map((m) => {
      const k = interactiveKeys(prefix, m.name, m.version);
      return [k.index, k.ref.prefix] as const;
    }));
    for (const [index, taggedPrefix] of indexes) {
      let cursor = '0';
      do {
        const [next, flat] = await redis.hscan(index, cursor, 'COUNT', 500);
        cursor = next;
        // Jobs of one envelope share it: look at each envelope once, in one round trip a page.
        const byEnvelope = new Map<string, string[]>();
        for (let i = 0; i + 1 < flat.length; i += 2) {
          const ids = byEnvelope.get(flat[i + 1]!) ?? [];
          ids.push(flat[i]!);
          byEnvelope.set(flat[i + 1]!, ids);
        }
        const envelopes = [...byEnvelope.keys()];
        const pipe = redis.pipeline();
        for (const where of envelopes) pipe.exists(`${taggedPrefix}:${where}`);
        const found = (await pipe.exec()) ?? [];
        const goneEnvelopes = envelopes.filter((_, i) => found[i]?.[1] === 0);
        const gone = goneEnvelopes.flatMap((where) => byEnvelope.get(where)!);
        // A job that ended meanwhile has left the index already: HDEL counts only what was still there.
        if (gone.length) dropped += await redis.hdel(index, ...gone);
        // An envelope with large inputs kept them in a key of its own, which only FINISH deletes (one key a command: Cluster).
        if (goneEnvelopes.length) await Promise.all(goneEnvelopes.map((where) => redis.unlink(`${taggedPrefix}:${where}:in`)));
      } while (cursor !== '0');
    }
    return dropped;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
