import { Queue, type Telemetry } from 'bullmq';
import type { Redis } from 'ioredis';
import { JOB_CATALOG, QUEUE_EVENTS_MAX_LEN, bulkQueue, chunkJobId, keys, queueMember, type BulkChunkPayload } from '@infer/contract';

export interface BulkQueuesOptions {
  connection: Redis;
  prefix: string;
  /** When tracing: BullMQ's add span per chunk, under the upload's request span, its context stored with the chunk. */
  telemetry?: Telemetry | undefined;
}


/**
 * The gateway's producers of bulk chunks, one BullMQ queue per model
 * version (`bulk.<model>.v<version>`), apart from the interactive queues.
 */
export class BulkQueues {
  private readonly queues = new Map<string, Queue>();
  /** Versions this process has put in the registry of queues (one SADD per version and process). */
  private readonly registered = new Set<string>();

  constructor(private readonly options: BulkQueuesOptions) {}

  get(model: string, version: string): Queue {
    const ref = bulkQueue(this.options.prefix, model, version);
    let queue = this.queues.get(ref.name);
    if (!queue) {
      queue = new Queue(ref.name, {
        connection: this.options.connection,
        prefix: ref.prefix,
        streams: { events: { maxLen: QUEUE_EVENTS_MAX_LEN } },
        ...(this.options.telemetry ? { telemetry: this.options.telemetry } : {}),
      });
      queue.on('error', () => {
        /* surfaced through the failing call; avoid an unhandled 'error' event */
      });
      this.queues.set(ref.name, queue);
    }
    return queue;
  }

  async add(model: string, version: string, payload: BulkChunkPayload): Promise<void> {
    const { attempts, backoff } = JOB_CATALOG.bulk;
    // In the registry of queues before its first chunk, as an interactive queue before its first envelope:
    // every gateway reports a version's queues from the registry once it no longer loads the version itself.
    const member = queueMember(model, version);
    if (!this.registered.has(member)) {
      await this.options.connection.sadd(keys(this.options.prefix).interactiveQueues, member);
      this.registered.add(member);
    }
    await this.get(model, version).add('bulk', payload, {
      jobId: chunkJobId(payload.batch, payload.chunk),
      attempts,
      backoff,
      // A chunk carries its rows: never keep one in Redis once it is done.
      removeOnComplete: true,
      removeOnFail: true,
    });
  }

  /**
   * Drop a canceled batch's chunks that no worker holds yet, so their rows do
   * not sit in Redis until a worker comes by to skip them. A chunk a worker
   * holds is locked and stays; its worker stops it at the next slice.
   */
  async removeChunks(model: string, version: string, batchId: string, chunks: number): Promise<void> {
    const queue = this.get(model, version);
    const step = 64;
    for (let i = 0; i < chunks; i += step) {
      const ids = Array.from({ length: Math.min(step, chunks - i) }, (_, k) => chunkJobId(batchId, i + k));
      await Promise.all(ids.map((id) => queue.remove(id).catch(() => 0)));
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.queues.values()].map((q) => q.close()));
  }
}
