import type { Redis } from 'ioredis';
import { isBatchEnded, keys, type BatchStatus, type JobError } from '@infer/contract';
import { hashToBatchRecord, newBatchHash, type BatchRecord, type NewBatchRecord } from './batch-record.js';
import { failedChunkResult, renderChunkResultPieces } from './chunk-result.js';
import { unrunChunkLines, type ChunkManifest } from './result-lines.js';
import { ADD_CHUNK, CANCEL, DISCARD, FINISH_CHUNK, SEAL, START_CHUNK } from './scripts.js';

export interface BatchStoreOptions {
  prefix: string;
  /** How long an ended batch, its results included, stays readable. */
  resultTtlMs: number;
  /**
   * Called when a batch ends (completed, or canceled), by whichever process
   * ended it: the one place `batch.completed` webhooks start from. Until it
   * has resolved, the batch stays in the index of unended batches, and
   * `unended` (the workers' sweep) calls it again: so a process that dies
   * between ending a batch and telling of it loses nothing, and the hook
   * must be idempotent (one event id per batch). Errors are passed to
   * `onError`, never thrown at the caller: the batch has ended either way.
   */
  onEnded?: (batch: BatchRecord) => Promise<void> | void;
  onError?: (err: unknown, what: string) => void;
}

/** What a state change answered: 'ok'; 'completed' when this call completed the batch; 'ended' when it had already ended. */
export type ChunkOutcome = 'ok' | 'completed' | 'duplicate' | 'missing' | 'ended';
export type StartChunkOutcome = BatchStatus | 'missing';
/** A cancel: committed, with the record as it left it; or why not. */
export type CancelOutcome = { outcome: 'canceled'; record: BatchRecord } | { outcome: 'missing' | 'completed' | 'already_canceled' };

/**
 * A batch stays in Redis while it runs, however long, and for `resultTtlMs`
 * after it ends; the wait is bounded too, so a batch whose chunks were lost
 * (no worker ever came) does not live forever.
 */
export const UNENDED_BATCH_TTL_MS = 7 * 24 * 3600 * 1000;

/**
 * The command that stores a chunk's results and ends it. Named here so that a
 * caller which must send it outside ioredis's auto-pipeline (the worker does)
 * names the same command the definition in the constructor does.
 */
export const FINISH_CHUNK_COMMAND = 'inferBatchFinishChunk';

type ScriptRedis = Redis & {
  inferBatchAddChunk(k1: string, k2: string, k3: string, ...argv: (string | number | Buffer)[]): Promise<string>;
  inferBatchStartChunk(k1: string, now: number): Promise<string>;
  inferBatchFinishChunk(k1: string, k2: string, k3: string, k4: string, ...argv: (string | number | Buffer)[]): Promise<string>;
  inferBatchSeal(k1: string, k2: string, k3: string, k4: string, ...argv: (string | number)[]): Promise<string>;
  inferBatchCancel(k1: string, k2: string, k3: string, k4: string, ...argv: (string | number)[]): Promise<string | string[]>;
  inferBatchDiscard(k1: string, k2: string, k3: string, k4: string): Promise<number>;
};

/** About the most stored result bytes a download holds read ahead of what it sends (always at least the next chunk). */
const READ_AHEAD_BYTES = 16 << 20;

/** How long a batch's place in its tenant's list is kept once its entry went, for a cursor naming it. */
const CURSOR_GRACE_MS = 3_600_000;

/**
 * Batches in Redis. Per batch, four keys (see contract `keys()`): the
 * record hash (fields and request counts), the results hash (chunk index →
 * that chunk's result lines, written once when the chunk ends), the pending
 * hash (chunk index → manifest of a chunk not yet ended) and the inputs hash
 * (chunk index → packed input bytes of a chunk not yet run). Plus one
 * sorted set per tenant for listing. Every state change is one Lua script
 * (scripts.ts), so a chunk costs a handful of Redis commands whatever its
 * number of rows.
 */
export class BatchStore {
  private readonly redis: ScriptRedis;
  private readonly k: ReturnType<typeof keys>;
  private readonly longTtlMs: number;

  constructor(
    redis: Redis,
    private readonly options: BatchStoreOptions,
  ) {
    this.k = keys(options.prefix);
    this.longTtlMs = UNENDED_BATCH_TTL_MS + options.resultTtlMs;
    for (const [name, lua, numberOfKeys] of [
      ['inferBatchAddChunk', ADD_CHUNK, 3],
      ['inferBatchStartChunk', START_CHUNK, 1],
      [FINISH_CHUNK_COMMAND, FINISH_CHUNK, 4],
      ['inferBatchSeal', SEAL, 4],
      ['inferBatchCancel', CANCEL, 4],
      ['inferBatchDiscard', DISCARD, 4],
    ] as const) {
      if (!(name in redis)) redis.defineCommand(name, { numberOfKeys, lua });
    }
    this.redis = redis as ScriptRedis;
  }

  /** Every key a batch writes, for tests and operators. */
  keysOf(id: string, tenant: string): string[] {
    return [this.k.batch(id), this.k.batchResults(id), this.k.batchPending(id), this.k.batchInputs(id), this.k.tenantBatches(tenant)];
  }

  async create(record: NewBatchRecord): Promise<void> {
    const key = this.k.batch(record.id);
    const index = this.k.tenantBatches(record.tenant);
    // Two transactions, one per hash tag (the batch's keys, the tenant's index), so each stays in one slot.
    // The record is written first: a listing never finds an id without a batch behind it.
    await this.redis.multi().hset(key, newBatchHash(record)).pexpire(key, this.longTtlMs).exec();
    await this.redis.multi().zadd(index, record.createdAt, record.id).pexpire(index, this.longTtlMs).exec();
    // Entries of batches that have expired are dropped here and when listing, their places kept for cursors.
    const expired = await this.redis.zrangebyscore(index, '-inf', record.createdAt - this.longTtlMs, 'WITHSCORES');
    if (expired.length > 0) {
      const gone: Array<readonly [string, number]> = [];
      for (let i = 0; i + 1 < expired.length; i += 2) gone.push([expired[i]!, Number(expired[i + 1])]);
      await this.leavePlace(record.tenant, gone);
    }
    await this.redis.zadd(this.k.runningBatches, record.createdAt, record.id);
  }

  /**
   * Register chunk `index` of an upload, with its packed input bytes (empty
   * when none of its items is valid); `failed` of its items were invalid.
   */
  async addChunk(id: string, index: number, manifest: ChunkManifest, failed: number, inputs: Buffer): Promise<ChunkOutcome> {
    return (await this.redis.inferBatchAddChunk(
      this.k.batch(id),
      this.k.batchPending(id),
      this.k.batchInputs(id),
      index,
      manifest.count,
      failed,
      JSON.stringify(manifest),
      this.longTtlMs,
      inputs,
    )) as ChunkOutcome;
  }

  /** The packed input bytes of a chunk not yet run; null once it has ended (or its batch has). */
  async chunkInputs(id: string, index: number): Promise<Buffer | null> {
    return this.redis.hgetBuffer(this.k.batchInputs(id), String(index));
  }

  /** The upload has ended. Completes the batch if every chunk already has. */
  async seal(id: string, now: number): Promise<ChunkOutcome> {
    const outcome = (await this.redis.inferBatchSeal(
      this.k.batch(id),
      this.k.batchResults(id),
      this.k.batchPending(id),
      this.k.batchInputs(id),
      now,
      this.options.resultTtlMs,
    )) as ChunkOutcome;
    if (outcome === 'completed') await this.ended(id);
    return outcome;
  }

  /** A worker takes a chunk: mark the batch running; answers the status it had. */
  async startChunk(id: string, now: number): Promise<StartChunkOutcome> {
    return (await this.redis.inferBatchStartChunk(this.k.batch(id), now)) as StartChunkOutcome;
  }

  /**
   * Write a chunk's results (a ChunkResultWriter's record, or NDJSON lines)
   * and count them, in one step. `succeeded` and `failed` count what ran;
   * items invalid at upload were counted then.
   */
  async finishChunk(id: string, index: number, results: Buffer | string, succeeded: number, failed: number, now: number): Promise<ChunkOutcome> {
    const outcome = (await this.redis.inferBatchFinishChunk(
      this.k.batch(id),
      this.k.batchResults(id),
      this.k.batchPending(id),
      this.k.batchInputs(id),
      index,
      results,
      succeeded,
      failed,
      now,
      this.options.resultTtlMs,
      this.longTtlMs,
    )) as ChunkOutcome;
    if (outcome === 'completed') await this.ended(id);
    return outcome;
  }

  async status(id: string): Promise<BatchStatus | null> {
    return (await this.redis.hget(this.k.batch(id), 'status')) as BatchStatus | null;
  }

  async get(id: string): Promise<BatchRecord | null> {
    return hashToBatchRecord(await this.redis.hgetall(this.k.batch(id)));
  }

  /**
   * Cancel a queued or running batch of this tenant. `missing` covers another
   * tenant's batch too, so the caller answers both with the same 404.
   */
  async cancel(id: string, tenant: string, now: number): Promise<CancelOutcome> {
    // The script answers the record it left (status canceled) with its outcome: the caller needs no read
    // after the cancel has committed, which could fail and turn a done cancel into an error.
    const reply = (await this.redis.inferBatchCancel(
      this.k.batch(id),
      this.k.batchResults(id),
      this.k.batchPending(id),
      this.k.batchInputs(id),
      now,
      this.options.resultTtlMs,
      tenant,
    )) as string | string[];
    if (!Array.isArray(reply)) return { outcome: reply as 'missing' | 'completed' | 'already_canceled' };
    const hash: Record<string, string> = {};
    for (let i = 1; i + 1 < reply.length; i += 2) hash[reply[i]!] = reply[i + 1]!;
    const record = hashToBatchRecord(hash)!;
    await this.tell(record);
    return { outcome: 'canceled', record };
  }

  /**
   * Forget a batch whose upload failed before it was accepted: it never existed for the client. One
   * canceled during its upload stays (DISCARD): the cancel was answered, and batch.completed sent.
   */
  async discard(id: string, tenant: string): Promise<void> {
    const forgotten = await this.redis.inferBatchDiscard(this.k.batch(id), this.k.batchResults(id), this.k.batchPending(id), this.k.batchInputs(id));
    if (forgotten !== 1) return;
    // A listing taken during the upload may have handed its id out as a page's `last_id`: its place is kept
    // (batchGone) for the cursor, and its entry goes, so failed uploads do not pile up in the index.
    const index = this.k.tenantBatches(tenant);
    const score = await this.redis.zscore(index, id);
    if (score !== null) await this.leavePlace(tenant, [[id, Number(score)]]);
    await this.redis.zrem(this.k.runningBatches, id);
  }

  /** Drop index entries, keeping where each stood (batchGone) for CURSOR_GRACE_MS, for cursors naming them. */
  private async leavePlace(tenant: string, gone: ReadonlyArray<readonly [string, number]>): Promise<void> {
    const pipe = this.redis.pipeline();
    for (const [id, score] of gone) pipe.set(this.k.batchGone(id), `${tenant} ${score}`, 'PX', CURSOR_GRACE_MS);
    await pipe.exec();
    await this.redis.zrem(this.k.tenantBatches(tenant), ...gone.map(([id]) => id));
  }

  /** How many entries of the index come before `after` (newest first), or null when `after` names no batch of the tenant's. */
  private async rankAfter(index: string, tenant: string, after: string): Promise<number | null> {
    const rank = await this.redis.zrevrank(index, after);
    if (rank !== null) return rank + 1;
    // Its entry went (a failed upload, an expiry met by a listing): it stood where its creation time puts it.
    const place = await this.redis.get(this.k.batchGone(after));
    const [owner, score] = place?.split(' ') ?? [];
    if (owner !== tenant || score === undefined) return null;
    // Newest first; batches created in the same millisecond come by id, descending (ZREVRANGE's order).
    const [newer, tied] = await Promise.all([this.redis.zcount(index, `(${score}`, '+inf'), this.redis.zrangebyscore(index, score, score)]);
    return newer + tied.filter((id) => id > after).length;
  }

  /**
   * The tenant's batches, newest first, `limit` of them after the batch
   * `after` (a cursor, as OpenAI's lists). `null` when `after` is not one of
   * the tenant's batches. Index entries of expired batches are removed on the way.
   */
  async list(tenant: string, limit: number, after?: string): Promise<{ records: BatchRecord[]; hasMore: boolean } | null> {
    const index = this.k.tenantBatches(tenant);
    let from = 0;
    if (after !== undefined) {
      const rank = await this.rankAfter(index, tenant, after);
      if (rank === null) return null;
      from = rank;
    }
    const records: BatchRecord[] = [];
    for (;;) {
      const want = limit + 1 - records.length;
      if (want <= 0) break;
      const flat = await this.redis.zrevrange(index, from, from + want - 1, 'WITHSCORES');
      if (flat.length === 0) break;
      const entries: Array<readonly [string, number]> = [];
      for (let i = 0; i + 1 < flat.length; i += 2) entries.push([flat[i]!, Number(flat[i + 1])]);
      const pipe = this.redis.pipeline();
      for (const [id] of entries) pipe.hgetall(this.k.batch(id));
      const hashes = (await pipe.exec()) ?? [];
      const gone: Array<readonly [string, number]> = [];
      entries.forEach((entry, i) => {
        const [err, h] = hashes[i]!;
        if (err) throw err;
        const record = hashToBatchRecord(h as Record<string, string>);
        if (record && record.tenant === tenant) records.push(record);
        else gone.push(entry);
      });
      from += entries.length;
      if (gone.length) {
        await this.leavePlace(tenant, gone);
        from -= gone.length;
      }
      // Fewer than asked for: the index has no more.
      if (entries.length < want) break;
    }
    return { records: records.slice(0, limit), hasMore: records.length > limit };
  }

  /**
   * The result lines of an ended batch, in submission order, a piece of about
   * a MiB of text at a time. Stored chunk results are read ahead (up to
   * `readAhead` chunks, fewer when they are large: at most about
   * READ_AHEAD_BYTES held) and rendered to NDJSON only as they stream; a chunk
   * with no results (its batch was canceled before it ran) is rendered from
   * its manifest.
   */
  async *results(record: BatchRecord, readAhead = 4): AsyncGenerator<Buffer> {
    const fetchChunk = async (i: number): Promise<{ stored: Buffer } | { lines: Buffer } | null> => {
      const written = await this.redis.hgetBuffer(this.k.batchResults(record.id), String(i));
      if (written) return { stored: written };
      const manifest = await this.redis.hget(this.k.batchPending(record.id), String(i));
      return manifest ? { lines: Buffer.from(unrunChunkLines(JSON.parse(manifest) as ChunkManifest)) } : null;
    };
    const ahead: Promise<{ stored: Buffer } | { lines: Buffer } | null>[] = [];
    let next = 0;
    // How many chunks to hold ahead, from the size of the last one read (one until a size is known): four of
    // 1 MiB, one of 64 MiB.
    let depth = 1;
    const fill = () => {
      while (next < record.chunks && ahead.length < depth) {
        const p = fetchChunk(next++);
        // Handled when awaited below; this keeps an early failure from being "unhandled" meanwhile.
        p.catch(() => undefined);
        ahead.push(p);
      }
    };
    fill();
    for (let i = 0; ahead.length > 0; i++) {
      const chunk = await ahead.shift()!;
      // Every chunk of an ended batch has its results, or its manifest: neither means its keys expired
      // while the file was being read. A file cut short must not end as if whole: the transfer fails.
      if (!chunk) throw new Error(`batch ${record.id}: chunk ${i} of its results is gone (the batch expired while they were read)`);
      const bytes = 'stored' in chunk ? chunk.stored.byteLength : chunk.lines.byteLength;
      depth = Math.max(1, Math.min(readAhead, Math.floor(READ_AHEAD_BYTES / Math.max(1, bytes))));
      fill();
      if ('lines' in chunk) yield chunk.lines;
      else yield* renderChunkResultPieces(chunk.stored);
    }
  }

  /**
   * Batches not yet ended, oldest first (`limit` of them), with the chunks
   * of each that have not ended: what a sweep looks at for chunks lost from
   * the queue. Ids whose batch has expired are dropped from the index here;
   * a batch that has ended but is still indexed (the process that ended it
   * died before its `onEnded` resolved) is told of again, then dropped.
   */
  async unended(limit: number): Promise<Array<{ record: BatchRecord; pending: Map<number, ChunkManifest> }>> {
    const ids = await this.redis.zrange(this.k.runningBatches, '0', String(limit - 1));
    const out: Array<{ record: BatchRecord; pending: Map<number, ChunkManifest> }> = [];
    for (const id of ids) {
      const record = await this.get(id);
      if (!record) {
        await this.redis.zrem(this.k.runningBatches, id);
        continue;
      }
      if (isBatchEnded(record.status)) {
        await this.tell(record);
        continue;
      }
      const pending = new Map<number, ChunkManifest>();
      for (const [chunk, manifest] of Object.entries(await this.redis.hgetall(this.k.batchPending(id)))) {
        pending.set(Number(chunk), JSON.parse(manifest) as ChunkManifest);
      }
      out.push({ record, pending });
    }
    return out;
  }

  /**
   * Whether a batch for this model version has not ended (uploading, queued
   * or running): a draining version is unloaded only once none has, or an
   * upload still sending chunks would leave them in a queue nobody reads.
   */
  async hasUnended(model: string, version: string, limit = 100_000): Promise<boolean> {
    const ids = await this.redis.zrange(this.k.runningBatches, '0', String(limit));
    if (ids.length === 0) return false;
    // More running batches than it reads: it cannot tell, so it says yes (the version stays until it can).
    if (ids.length > limit) return true;
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hmget(this.k.batch(id), 'model', 'version', 'status');
    for (const [err, fields] of (await pipe.exec()) ?? []) {
      if (err) throw err;
      const [m, v, status] = fields as Array<string | null>;
      if (m === model && v === version && status !== 'completed' && status !== 'canceled') return true;
    }
    return false;
  }

  /** End a chunk that will never run (its queue job is gone): its rows fail with `error`, as one finished chunk. */
  async failChunk(id: string, index: number, manifest: ChunkManifest, error: JobError, now: number): Promise<ChunkOutcome> {
    const record = failedChunkResult(manifest.start, manifest.count, manifest.custom_ids, manifest.failures, error);
    return this.finishChunk(id, index, record, 0, manifest.count - manifest.failures.length, now);
  }

  private async ended(id: string): Promise<void> {
    try {
      const record = await this.get(id);
      if (record) await this.tell(record);
      else await this.redis.zrem(this.k.runningBatches, id);
    } catch (err) {
      this.options.onError?.(err, 'batch ended hook');
    }
  }

  /** Run `onEnded` for an ended batch, then drop it from the index: not before, so a crash in between is retold. */
  private async tell(record: BatchRecord): Promise<void> {
    try {
      await this.options.onEnded?.(record);
      await this.redis.zrem(this.k.runningBatches, record.id);
    } catch (err) {
      this.options.onError?.(err, 'batch ended hook');
    }
  }
}
