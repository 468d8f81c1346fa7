import { v4 as uuidv4 } from 'uuid';
import {
  ABANDONED_UPLOAD_MS,
  isBatchEnded,
  type Batch,
  type BatchList,
  type BulkChunkPayload,
  type WebhookEventFilter,
  platformNow,
} from '@infer/contract';
import { failedChunkResult, toBatch, type BatchRecord, type BatchStore, type ChunkManifest } from '@infer/batch-store';
import { AppError, badRequest, conflict, invalidInput, notFound, unavailable } from '@infer/errors';
import type { Logger } from '@infer/logger';
import type { ModelVersion } from '@infer/models';
import type { ModelResolver } from '../models/model-catalog.js';
import { assertWebhookUrlAllowed } from '@infer/webhooks';
import { assertMetadataFits } from '../http/metadata.js';
import type { BulkQueues } from './bulk-queues.js';
import { assertServed, type ServingCheck } from '../jobs/served.js';
import type { InteractiveRequests } from './interactive-requests.js';
import { DEFAULT_CHUNK_LIMITS, type BuiltChunk, type ChunkLimits } from './chunk-builder.js';
import { buildChunks, type ChunkSource } from './chunk-sources.js';
import { ndjsonLines, type RawItem } from './ndjson-lines.js';
import type { OpenBatches } from './open-batches.js';
import type { RedisMemory } from './redis-memory.js';
import type { ParseThread } from './parse-thread/parse-thread.js';

export interface BatchServiceDeps {
  /** Chooses the version a job goes to (pinned, or by the routing). */
  models: ModelResolver;
  /** Which model versions live workers serve; absent, every version is queued. */
  fleet?: ServingCheck;
  store: BatchStore;
  queues: BulkQueues;
  webhookAllowPrivate: boolean;
  logger: Logger;
  /** Interactive requests in flight in this gateway: reading an upload waits while there are any. */
  interactive?: InteractiveRequests;
  /** Where NDJSON uploads are read; without one they are read on the event loop. */
  parseThread?: ParseThread;
  /** TENANT_MAX_OPEN_BATCHES; without it a tenant may have any number open. */
  openBatches?: OpenBatches;
  chunkLimits?: ChunkLimits;
  /**
   * Whether the version's queue is closed (its workers are unloading it). Read once the upload's
   * record is written: a worker closes the queue before it looks for unended batches, so either it
   * sees this upload and waits for it, or the upload sees the queue closed and is refused (503).
   */
  queueClosed?: (model: ModelVersion) => Promise<boolean>;
  /** Whether Redis is nearly full (redis-memory.ts): an upload is refused (503) then, at its start or between chunks. */
  memory?: Pick<RedisMemory, 'nearlyFull'>;
  /** Told of the rows of each chunk this gateway ends itself (all failed at upload: nothing to run); the metrics count them. */
  onRowsFailed?: (model: string, version: string, rows: number) => void;
  now?: () => number;
}

const nearlyFull = () =>
  unavailable('The queue backend (Redis) is nearly full; batch uploads are refused until it has drained (nothing of this one was kept)', 5);

/** The batch-level fields of either upload form. */
export interface BatchParams {
  model: string;
  version?: string | number | undefined;
  webhook?: string | undefined;
  webhook_events_filter?: WebhookEventFilter[] | undefined;
  metadata?: Record<string, unknown> | undefined;
}

/** Batch-level fields checked against the model and the rules: nothing is read from the body yet. */
export interface PreparedBatch {
  model: ModelVersion;
  params: BatchParams;
}

const BATCH_ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * The batch's record went from Redis during its upload (a Redis restarted without persistence, an evicting
 * maxmemory-policy): nothing of the upload is kept (the caller abandons it), and the client sends it again.
 */
const recordLost = (): AppError => unavailable("The batch's record was lost from Redis during the upload; nothing of it was kept, send it again", 1);

/**
 * What the batch routes do, without HTTP. An upload is consumed as a stream
 * of items: each is validated and packed into the chunk being built
 * (ChunkBuilder); a full chunk is registered in the batch store and enqueued
 * on the model's bulk queue while the next one is built (one write in
 * flight, so reading the body waits on Redis and memory stays flat). When the
 * body ends the batch is sealed; it completes when its last chunk has run.
 */
export class BatchService {
  private readonly now: () => number;
  private readonly limits: ChunkLimits;

  constructor(private readonly deps: BatchServiceDeps) {
    this.now = deps.now ?? platformNow;
    this.limits = deps.chunkLimits ?? DEFAULT_CHUNK_LIMITS;
  }

  /** Check everything known before the items: model (404), webhook and metadata (422). */
  prepare(params: BatchParams): PreparedBatch {
    const model = this.deps.models.resolve(params.model, params.version === undefined ? undefined : String(params.version));
    try {
      if (params.webhook !== undefined) assertWebhookUrlAllowed(params.webhook, this.deps.webhookAllowPrivate);
      if (params.webhook_events_filter && !params.webhook) throw invalidInput('webhook_events_filter is given without a webhook');
      if (params.metadata) assertMetadataFits(params.metadata);
    } catch (err) {
      this.unroute({ model, params });
      throw err;
    }
    return { model, params };
  }

  /**
   * Give a refused batch's routing pick back: the routing counts what was
   * accepted (docs/api.md, Routing), as for jobs (JobService.unroute).
   */
  private unroute({ model, params }: PreparedBatch): void {
    if (params.version === undefined) this.deps.models.unroute?.(model.name, model.version);
  }

  /** An NDJSON upload, read as a stream: on the parse thread when there is one. */
  submitLines(tenant: string, prepared: PreparedBatch, body: AsyncIterable<Buffer>, maxLineBytes: number): Promise<Batch> {
    const { model } = prepared;
    const source = this.deps.parseThread
      ? this.deps.parseThread.chunks(model, this.limits, maxLineBytes, body, this.deps.interactive)
      : buildChunks(model, this.limits, ndjsonLines(body, maxLineBytes), this.deps.interactive);
    return this.submit(tenant, prepared, source);
  }

  /** The JSON form's `items`, already parsed. */
  submitItems(tenant: string, prepared: PreparedBatch, items: AsyncIterable<RawItem[]>): Promise<Batch> {
    return this.submit(tenant, prepared, buildChunks(prepared.model, this.limits, items, this.deps.interactive));
  }

  /**
   * Take every chunk of the upload, register and enqueue each, seal the
   * batch. If reading fails before the seal (the client went away, Redis
   * did) the batch is discarded: without a 202 it never existed for the
   * client. Once sealed it runs, and is answered 202 whatever follows.
   */
  private async submit(tenant: string, prepared: PreparedBatch, source: ChunkSource): Promise<Batch> {
    try {
      return await this.accept(tenant, prepared, source);
    } catch (err) {
      this.unroute(prepared);
      throw err;
    }
  }

  private async accept(tenant: string, prepared: PreparedBatch, source: ChunkSource): Promise<Batch> {
    await assertServed(this.deps.fleet, prepared.model);
    if (await this.deps.memory?.nearlyFull()) throw nearlyFull();
    const { model, params } = prepared;
    const id = uuidv4();
    const createdAt = this.now();
    // Before a byte of the body is read: a tenant at its limit is told so at once (429).
    try {
      await this.deps.openBatches?.reserve(tenant, id);
    } catch (err) {
      // Redis may have taken the slot and lost the reply with its connection: give it back (with the
      // retries an abandoned upload gets), or the tenant's retries meet 429 for UPLOAD_GRACE_MS.
      if (!(err instanceof AppError)) await this.abandon(id, tenant, model, 0);
      throw err;
    }
    let live = true;
    let chunks = 0;
    // What the upload counted, for an answer built here when the record cannot be read back (see below).
    const counted = { total: 0, failed: 0 };
    let sealed: Awaited<ReturnType<typeof this.deps.store.seal>> | undefined;
    let writing: Promise<void> = Promise.resolve();
    let failure: { err: unknown } | undefined;

    const write = async (chunk: BuiltChunk, index: number): Promise<void> => {
      if (await this.deps.memory?.nearlyFull()) throw nearlyFull();
      const manifest: ChunkManifest = { start: chunk.start, count: chunk.count, custom_ids: chunk.custom_ids, failures: chunk.failures };
      const { packed, ...described } = chunk;
      const outcome = await this.deps.store.addChunk(id, index, manifest, chunk.failures.length, packed);
      if (outcome === 'missing') throw recordLost();
      if (outcome !== 'ok') {
        // Canceled while it was uploading: the rest of the body is read and dropped.
        live = false;
        return;
      }
      counted.total += chunk.count;
      counted.failed += chunk.failures.length;
      if (chunk.rows === 0) {
        // Nothing to run: the gateway writes the chunk's (failed) results itself.
        const results = failedChunkResult(chunk.start, chunk.count, chunk.custom_ids, chunk.failures, null);
        const outcome = await this.deps.store.finishChunk(id, index, results, 0, 0, this.now());
        if (outcome === 'ok' || outcome === 'completed') this.deps.onRowsFailed?.(model.name, model.version, chunk.count);
        return;
      }
      const payload: BulkChunkPayload = { tenant, batch: id, chunk: index, ...described };
      await this.deps.queues.add(model.name, model.version, payload);
    };
    const webhookEventsFilter = params.webhook ? [...new Set(params.webhook_events_filter ?? (['completed'] as const))] : [];
    try {
      // Recorded before a byte of the body is read: a worker unloading the version meanwhile sees the
      // upload among the unended batches and keeps serving the version until the batch has run.
      await this.deps.store.create({
        id,
        tenant,
        model: model.name,
        version: model.version,
        createdAt,
        metadata: params.metadata ?? null,
        webhook: params.webhook ?? null,
        webhookEventsFilter,
      });
      // From now on a missing record means the batch is gone (it expired), not that it is still uploading.
      await this.deps.openBatches?.recorded(tenant, id);
      if (await this.deps.queueClosed?.(model)) {
        throw unavailable(`Model "${model.name}" version ${model.version} is being unloaded; retry`, 1);
      }
      for await (const chunk of source) {
        // Canceled while uploading: the rest of the body is read and dropped.
        if (!live) continue;
        // One write in flight: the next chunk is built while this one goes to Redis.
        await writing;
        if (failure) throw failure.err;
        if (!live) continue;
        writing = write(chunk, chunks++).catch((err: unknown) => {
          failure = { err };
        });
      }
      await writing;
      if (failure) throw failure.err;
      if (chunks === 0) throw badRequest('invalid_input', 'The batch has no items');
      if (live) sealed = await this.deps.store.seal(id, this.now());
      if (sealed === 'missing') throw recordLost();
    } catch (err) {
      await writing;
      await this.abandon(id, tenant, model, chunks);
      throw err;
    }
    try {
      return toBatch(await this.read(tenant, id));
    } catch (err) {
      // The batch is in and runs: a 503 now would have the client send it again, and it would run twice.
      // The 202 gives it the batch as the upload left it (as a submit's 202 gives a job as last known).
      if (sealed !== 'ok' && sealed !== 'completed') throw err;
      this.deps.logger.warn({ batch: id, err: (err as Error).message }, 'a sealed batch could not be read back; answering it as the upload left it');
      return toBatch({
        id,
        tenant,
        model: model.name,
        version: model.version,
        status: sealed === 'completed' ? 'completed' : 'queued',
        createdAt,
        startedAt: null,
        completedAt: sealed === 'completed' ? this.now() : null,
        metadata: params.metadata ?? null,
        webhook: params.webhook ?? null,
        webhookEventsFilter,
        counts: { total: counted.total, succeeded: 0, failed: counted.failed, canceled: 0 },
        chunks,
        chunksDone: 0,
        sealed: true,
      });
    }
  }

  async get(tenant: string, id: string): Promise<Batch> {
    return toBatch(await this.read(tenant, id));
  }

  async list(tenant: string, limit: number, after?: string): Promise<BatchList> {
    const page = await this.deps.store.list(tenant, limit, after);
    if (!page) throw badRequest('invalid_input', `after: no batch with id "${after}"`);
    const data = page.records.map(toBatch);
    return {
      object: 'list',
      data,
      has_more: page.hasMore,
      ...(data.length ? { first_id: data[0]!.id, last_id: data[data.length - 1]!.id } : {}),
    };
  }

  /** The result lines of an ended batch, chunk by chunk; 409 while it runs. */
  async results(tenant: string, id: string): Promise<AsyncGenerator<Buffer>> {
    const record = await this.read(tenant, id);
    if (!isBatchEnded(record.status)) {
      throw conflict(`The batch is ${record.status}; its results can be read once it has ended (completed or canceled)`);
    }
    return this.deps.store.results(record);
  }

  /** Items not yet run end canceled; results already written are kept. 409 for an ended batch. */
  async cancel(tenant: string, id: string): Promise<Batch> {
    if (!BATCH_ID_RE.test(id)) throw this.missing(id);
    const canceled = await this.deps.store.cancel(id, tenant, this.now());
    if (canceled.outcome === 'missing') throw this.missing(id);
    if (canceled.outcome !== 'canceled') {
      const was = canceled.outcome === 'already_canceled' ? 'canceled' : canceled.outcome;
      throw conflict(`The batch has already ended (${was}); only queued or running batches can be canceled`);
    }
    // The cancel has committed: the answer is 200 whatever follows (a retry would meet 409). Chunks left in
    // the queue are taken out here; any this misses, workers skip (their batch is canceled).
    const { record } = canceled;
    await this.deps.queues
      .removeChunks(record.model, record.version, id, record.chunks)
      .catch((err: unknown) => this.deps.logger.warn({ batch: id, err: (err as Error).message }, 'could not take a canceled batch\'s chunks out of the queue; workers will skip them'));
    return toBatch(record);
  }

  private async read(tenant: string, id: string): Promise<BatchRecord> {
    const record = BATCH_ID_RE.test(id) ? await this.deps.store.get(id) : null;
    if (!record || record.tenant !== tenant) throw this.missing(id);
    return record;
  }

  private missing(id: string) {
    return notFound('batch_not_found', `No batch with id "${id}"`);
  }

  /**
   * Forget an upload that failed: its batch (records, chunks queued) and its
   * open-batch slot, as if it had never been sent; the client was told to
   * send it again. When Redis is what failed, the first try fails too: it is
   * tried again in the background until Redis answers (within
   * ABANDONED_UPLOAD_MS; after that the workers' sweep discards what is
   * left), so the batch does not come back with Redis, holding the slot its
   * retry needs. Workers skip chunks of a batch that is gone.
   */
  private async abandon(id: string, tenant: string, model: ModelVersion, chunks: number): Promise<void> {
    const attempt = async (): Promise<void> => {
      await this.deps.store.discard(id, tenant);
      if (chunks > 0) await this.deps.queues.removeChunks(model.name, model.version, id, chunks);
      await this.deps.openBatches?.release(tenant, id);
    };
    try {
      await attempt();
      return;
    } catch (err) {
      this.deps.logger.warn({ batch: id, err: (err as Error).message }, 'could not clean up an abandoned upload yet; trying again in the background');
    }
    const giveUpAt = this.now() + ABANDONED_UPLOAD_MS;
    const retry = (delayMs: number) => {
      const timer = setTimeout(() => {
        attempt().then(
          () => this.deps.logger.info({ batch: id }, 'cleaned up an abandoned upload'),
          () => {
            if (this.now() + delayMs < giveUpAt) retry(Math.min(delayMs * 2, 30_000));
          },
        );
      }, delayMs);
      // A gateway that stops leaves the rest to the workers' sweep.
      timer.unref();
    };
    retry(1000);
  }
}
