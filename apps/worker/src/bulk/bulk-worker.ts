import { UnrecoverableError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { BulkChunkPayload, JOB_CATALOG, bulkQueue, platformNow } from '@infer/contract';
import type { BatchStore } from '@infer/batch-store';
import { markRunBegan, noteRunning, runningNote } from '@infer/job-store';
import type { Logger } from '@infer/logger';
import { awaitAtMost, blockingConnectionDown } from '@infer/lifecycle';
import type { ModelVersion, RunWatch } from '@infer/models';
import { spanTime, type Tracing } from '@infer/tracing';
import { DEFAULT_MAX_RUN_MS } from '@infer/locks';
import { QueueConsumer, type ConsumerSink, type ConsumerSource } from '../consumer/queue-consumer.js';
import type { VersionMetrics, WorkerMetrics } from '../metrics.js';
import { MalformedChunkError, decodeChunk, failChunk, runChunk, type ChunkResult, type RunChunkHooks } from './bulk-runner.js';
import { traceChunk, type ChunkEnd } from './chunk-tracing.js';
import { ChunkRunMark } from './chunk-run-mark.js';
import { LongRunWarning } from '../consumer/long-run-warning.js';
import { outputLimits, type OutputLimits } from '../output-limits.js';

/** What a BulkWorker yields to: the InteractiveWorker of the same model version. */
export interface InteractiveGate {
  /** True while interactive jobs are in hand. */
  readonly busy: boolean;
  /** Resolves when none are. */
  whenIdle(): Promise<void>;
}

interface Held {
  job: Job;
  token: string;
}

export interface BulkWorkerOptions {
  model: ModelVersion;
  /** A connection for BullMQ and the batch store's commands. */
  connection: Redis;
  store: BatchStore;
  logger: Logger;
  prefix: string;
  lockMs: number;
  /** WORKER_MAX_RUN_MS: the longest a model run may hold the event loop with this worker's locks kept. @default DEFAULT_MAX_RUN_MS */
  maxRunMs?: number;
  /** MAX_OUTPUT_BYTES: the most output bytes one item keeps. @default MAX_OUTPUT_BYTES_DEFAULT (16 MiB) */
  maxOutputBytes?: number;
  /** The most output bytes one chunk's stored results hold. @default CALL_OUTPUT_BYTES */
  callOutputBytes?: number;
  /** The interactive worker of the same model version in this process. */
  gate?: InteractiveGate;
  metrics?: WorkerMetrics;
  /**
   * How long an idle fetch blocks on the queue's marker before looking
   * again. `close()` does not wait for it (it interrupts the blocking read).
   * @default 5 (seconds)
   */
  blockSeconds?: number;
  /**
   * Longest a slice waits for interactive work to finish before it runs
   * anyway: unbroken interactive load slows a batch down but never stops it.
   * @default 1000
   */
  maxYieldMs?: number;
  /** How often a running chunk looks whether its batch was canceled. @default 200 */
  cancelCheckMs?: number;
  /** When enabled: each chunk's processing as a span in its upload's trace (chunk-tracing.ts). */
  tracing?: Tracing;
}

/**
 * Consumes one model version's bulk queue (`bulk.<model>.v<version>`): each
 * job is a chunk of up to a few thousand rows of one batch.
 *
 * Fairness, in two layers:
 *  - In Redis, bulk chunks sit in a queue of their own, so an interactive job
 *    never waits behind a batch's backlog: the InteractiveWorker of the same model
 *    fetches it from the interactive queue at once, whatever the bulk queue holds.
 *  - In the process, the chunk runs in slices of `max_batch_size` rows, and
 *    before each slice the BulkWorker waits while the InteractiveWorker has
 *    interactive jobs in hand (`gate.busy`). A job that arrives while a slice
 *    runs waits for at most that one slice (a fraction of a millisecond for
 *    the MLP); interactive batches never queue behind bulk slices. Under
 *    unbroken interactive load a slice still runs every `maxYieldMs`.
 *
 * One chunk is computed at a time; the next one is fetched meanwhile, and
 * writing a chunk's results and completing it in BullMQ overlap with running
 * the next one. A chunk's results are written in one step
 * (BatchStore.finishChunk), idempotently, so a chunk whose worker died is
 * simply run again by the one that picks it up after BullMQ's stalled check.
 * A canceled batch stops its running chunk at the next slice; that chunk's
 * items are counted canceled.
 */
export class BulkWorker {
  private readonly consumer: QueueConsumer<Held>;
  private readonly log: Logger;
  private readonly longRuns: LongRunWarning;
  private readonly limits: OutputLimits;
  private readonly maxYieldMs: number;
  private readonly cancelCheckMs: number;
  /** Chunks fetched and not yet run, in order; at most one waits while another runs. */
  private readonly waiting: Held[] = [];
  /** The chunk being computed, as a promise, or undefined. */
  private running: Promise<void> | undefined;
  private roomWaiters: Array<() => void> = [];
  /** The batch last seen queued or running, and when: chunks of it that follow skip the look. */
  private live: { batch: string; at: number } | undefined;
  /** The previous chunk's results write and completion, overlapping the next chunk's run. */
  private finishing: Promise<void> = Promise.resolve();
  private readonly metrics: VersionMetrics | undefined;
  private readonly queueName: string;

  constructor(private readonly options: BulkWorkerOptions) {
    const { model } = options;
    this.queueName = bulkQueue(options.prefix, model.name, model.version).name;
    this.log = options.logger.child({ model: model.name, version: model.version, bulk: true });
    this.limits = outputLimits(options);
    this.longRuns = new LongRunWarning(options.maxRunMs ?? DEFAULT_MAX_RUN_MS, this.log);
    this.metrics = options.metrics?.forVersion(model);
    this.maxYieldMs = options.maxYieldMs ?? 1000;
    this.cancelCheckMs = options.cancelCheckMs ?? 200;
    this.consumer = new QueueConsumer<Held>({
      queue: bulkQueue(options.prefix, model.name, model.version),
      connection: options.connection,
      logger: this.log,
      lockMs: options.lockMs,
      maxRunMs: options.maxRunMs ?? DEFAULT_MAX_RUN_MS,
      maxStalledCount: JOB_CATALOG.bulk.maxStalledCount,
      blockSeconds: options.blockSeconds ?? 5,
      source: (bull) => this.source(bull),
      sink: this.sink(),
    });
  }

  start(): void {
    this.consumer.start();
  }

  /** Stop fetching, finish the chunk in hand (one fetched but not started goes back to the queue), then let go of Redis. Idempotent. */
  close(): Promise<void> {
    return this.consumer.close();
  }

  /** BullMQ's own fetch (moveToActive): chunks are few and large, and it promotes retries whose backoff has passed. */
  private source(bull: QueueConsumer<Held>['bull']): ConsumerSource<Held> {
    return {
      jobId: (h) => h.job.id!,
      fetch: async (token, _room, block) => {
        const job = await bull.getNextJob(token, { block });
        return { items: job ? [{ job, token }] : [], drained: !job };
      },
      // An idle fetch is blocked on BullMQ's own blocking connection: dropping it ends the wait now (BullMQ
      // answers no job), where waiting for it would hold the worker's stop for up to blockSeconds. Only when it
      // is connected (blockingConnectionDown says why); a read on one that is reconnecting ends by its own
      // timeout once it is back, or when the consumer's close drops the connection.
      close: async () => {
        if (!(await blockingConnectionDown(bull))) await awaitAtMost(bull.backend.disconnectBlocking(true), 1000);
      },
    };
  }

  /**
   * One chunk is computed at a time; the next one is fetched meanwhile, and
   * writing a chunk's results and completing it in BullMQ overlap with
   * running the next one.
   */
  private sink(): ConsumerSink<Held> {
    return {
      room: () => (this.waiting.length + (this.running ? 1 : 0) < 2 ? 1 : 0),
      whenRoom: () => new Promise((resolve) => this.roomWaiters.push(resolve)),
      idle: () => this.waiting.length === 0 && !this.running,
      accept: (items) => {
        this.waiting.push(...items);
        this.runNext();
      },
      drained: () => undefined,
      settled: async () => {
        while (this.running) await this.running;
        for (const held of this.waiting.splice(0)) await this.handBack(held);
        await this.finishing;
      },
    };
  }

  private runNext(): void {
    if (this.running || this.consumer.stopped) return;
    const held = this.waiting.shift();
    if (!held) return;
    this.running = (async () => {
      try {
        await this.process(held.job, held.token);
      } catch (err) {
        // A transient failure (Redis went away mid-chunk): BullMQ retries the chunk.
        this.log.warn({ err: (err as Error).message, jobId: held.job.id }, 'bulk chunk failed; handing it back to the queue');
        await this.failed(held.job, held.token, err instanceof Error ? err : new Error(String(err)));
      }
    })().finally(() => {
      this.running = undefined;
      const waiters = this.roomWaiters;
      this.roomWaiters = [];
      for (const wake of waiters) wake();
      this.runNext();
    });
  }

  /** A chunk fetched ahead but not run: back to the queue, unless its batch has ended (then it is done). */
  private async handBack({ job, token }: Held): Promise<void> {
    const batch = (job.data as { batch?: unknown }).batch;
    const status = typeof batch === 'string' ? await this.options.store.status(batch).catch(() => 'running' as const) : null;
    if (status !== 'queued' && status !== 'running') return this.settle(job, token);
    try {
      await job.moveToWait(token);
    } catch (err) {
      this.log.warn({ err: (err as Error).message, jobId: job.id }, 'could not hand back a prefetched chunk; it runs again after its lock lapses');
    } finally {
      this.consumer.release(job.id!);
    }
  }

  private async process(job: Job, token: string): Promise<void> {
    const { store, model } = this.options;
    const parsed = BulkChunkPayload.safeParse(job.data);
    if (!parsed.success) {
      this.log.error({ jobId: job.id, err: parsed.error.issues[0]?.message }, 'malformed bulk chunk; dropped');
      await this.settle(job, token, new UnrecoverableError(`malformed bulk chunk: ${parsed.error.issues[0]?.message}`));
      return;
    }
    const p = parsed.data;
    // For the chunk's span: on this host's clock, as its runs' are.
    const startedAt = spanTime();
    // Consecutive chunks of one batch: a batch seen live a moment ago needs no second look.
    const fresh = this.live?.batch === p.batch && performance.now() - this.live.at < this.cancelCheckMs;
    const before = fresh ? 'running' : await store.startChunk(p.batch, platformNow());
    if (before === 'queued' || before === 'running') this.live = { batch: p.batch, at: performance.now() };
    if (before !== 'queued' && before !== 'running') {
      // Canceled (its items were counted then), expired, or already ended: nothing to run.
      await this.settle(job, token);
      return;
    }
    // Held before MARK_RUN_BEGAN sets the note: another's run that starts meanwhile clears it after (one connection, in order).
    const held = new ChunkRunMark(this.options.connection, this.jobKey(job), token, job.attemptsMade, this.log);
    const stalls = await this.runBegins(job, token, p);
    if (!stalls.held || stalls.deferred) held.done();
    const mark = stalls.held && !stalls.deferred ? held : undefined;
    if (stalls.deferred) {
      const { record, failed } = failChunk(p, { code: 'worker_lost', message: `the chunk's worker died or hung repeatedly (${job.deferredFailure || 'job stalled more than allowable limit'})` });
      this.finishLater(job, token, p, { record, succeeded: 0, failed, stopped: false, runs: [] }, startedAt);
      return;
    }
    const packed = p.rows > 0 ? await store.chunkInputs(p.batch, p.chunk) : Buffer.alloc(0);
    if (!packed) {
      mark?.done();
      // Its inputs go when it ends: it ran already (a worker died between writing its
      // results and completing it here; the write below answers 'duplicate'), or they were lost.
      const { record, failed } = failChunk(p, { code: 'inputs_lost', message: "the chunk's inputs are no longer in Redis" });
      this.finishLater(job, token, p, { record, succeeded: 0, failed, stopped: false, runs: [] }, startedAt);
      return;
    }
    let result: ChunkResult;
    try {
      const alone = stalls.own ? await this.alone(job, token, p, mark) : undefined;
      result = await runChunk(model, p, decodeChunk(model, p, packed), {
        beforeSlice: this.sliceGate(p.batch, mark),
        limits: this.limits,
        ...(alone ?? {}),
        ...(mark ? { watch: mark.watch() } : {}),
      });
    } catch (err) {
      if (!(err instanceof MalformedChunkError)) throw err;
      this.log.error({ jobId: job.id, err: err.message }, 'bulk chunk does not fit the model; its items fail');
      const { record, failed } = failChunk(p, { code: 'invalid_input', message: err.message });
      result = { record, succeeded: 0, failed, stopped: false, runs: [] };
    } finally {
      mark?.done();
    }
    // The slices that ran count, a chunk stopped by its batch's cancel included: ONNX Runtime ran them.
    this.metrics?.runs(result.runs);
    this.longRuns.observe(result.runs);
    if (result.stopped) {
      this.traced(job, p, result, startedAt, { stopped: true });
      await this.settle(job, token);
      return;
    }
    if (result.failed > 0) this.log.warn({ batch: p.batch, chunk: p.chunk, failed: result.failed }, 'rows of a chunk failed in ONNX Runtime; the rest of the chunk ran without them');
    this.finishLater(job, token, p, result, startedAt);
  }

  /** The chunk's spans, in its upload's trace (BullMQ keeps the add span's traceparent with the job). */
  private traced(job: Job, p: BulkChunkPayload, result: ChunkResult, startedAt: number, end: ChunkEnd): void {
    const tracing = this.options.tracing;
    if (tracing?.enabled) traceChunk(tracing, this.options.model, this.queueName, p, job.opts.telemetry?.metadata, result, startedAt, end);
  }

  /**
   * Write the chunk's results and complete it while the next chunk runs.
   * Waits for the previous chunk's write first, so at most one is in flight.
   */
  private finishLater(job: Job, token: string, p: BulkChunkPayload, result: ChunkResult, startedAt: number): void {
    const previous = this.finishing;
    this.finishing = (async () => {
      await previous;
      try {
        const outcome = await this.options.store.finishChunk(p.batch, p.chunk, result.record, result.succeeded, result.failed, platformNow());
        // Counted where the batch counts them: a chunk run twice (its worker died after writing) is a duplicate here.
        // Its items that failed at upload end with it (their results are written now): failed rows too.
        if (outcome === 'ok' || outcome === 'completed') this.metrics?.bulkRowsEnded(result.succeeded, result.failed + p.failures.length);
        if (outcome === 'completed') this.log.info({ batch: p.batch }, 'batch completed');
        this.traced(job, p, result, startedAt, { written: true });
        await this.settle(job, token);
      } catch (err) {
        this.traced(job, p, result, startedAt, { written: false, error: (err as Error).message });
        this.log.warn({ err: (err as Error).message, jobId: job.id }, 'could not write a chunk; handing it back to the queue');
        await this.failed(job, token, err instanceof Error ? err : new Error(String(err)));
      }
    })();
  }

  /** The chunk's BullMQ job hash, where the crash containment's marks live. */
  private jobKey(job: Job): string {
    const queue = bulkQueue(this.options.prefix, this.options.model.name, this.options.model.version);
    return `${queue.prefix}:${queue.name}:${job.id!}`;
  }

  /**
   * Mark that a run of this chunk begins (MARK_RUN_BEGAN; one script call a
   * chunk), and count the stalls of its own runs: a worker died or hung
   * running it (`own`: then it runs its rows one at a time), too often
   * (`deferred`: its rows end `worker_lost`). Stalls it had only while it was
   * fetched ahead, beside runs that died, do not count: it runs whole. When
   * the take no longer holds the chunk (nothing is written), BullMQ's stall
   * count decides, as it would alone.
   */
  private async runBegins(job: Job, token: string, p: BulkChunkPayload): Promise<{ own: boolean; deferred: boolean; held: boolean }> {
    const own = await markRunBegan(this.options.connection, this.jobKey(job), token, job.attemptsMade, JOB_CATALOG.bulk.maxStalledCount);
    if (own === 'not-held') return { own: job.stalledCounter > 0, deferred: Boolean(job.deferredFailure), held: false };
    if (job.stalledCounter > own) {
      this.log.info({ batch: p.batch, chunk: p.chunk, stalls: job.stalledCounter, own }, 'chunk was only fetched ahead when some of its workers died or hung; those stalls are not counted');
    }
    return { own: own > 0, deferred: own > JOB_CATALOG.bulk.maxStalledCount, held: true };
  }

  /**
   * A chunk whose run stalled before (its worker died or hung, maybe on one
   * of its rows: ONNX Runtime can crash the process, as an integer
   * overflow's SIGFPE does) runs its rows one at a time, each noted on the
   * chunk's BullMQ job (MARK_RUNNING, under this take's lock) in its turn
   * before its run and the note cleared after; the row a worker was running
   * alone when it died fails without running. A crashing row costs two
   * workers and fails alone, instead of the chunk's every row ending `worker_lost`.
   */
  private async alone(job: Job, token: string, p: BulkChunkPayload, mark: ChunkRunMark | undefined): Promise<Pick<RunChunkHooks, 'alone'>> {
    const { connection } = this.options;
    const jobKey = this.jobKey(job);
    const noted = await runningNote(connection, jobKey);
    const blamed = noted === undefined || noted === '' ? undefined : Number(noted);
    if (blamed !== undefined) this.log.error({ batch: p.batch, chunk: p.chunk, offset: blamed }, "a worker died or hung running this row alone; it fails, the chunk's other rows run");
    const note = (value: string) => () =>
      noteRunning(connection, jobKey, token, value).then(
        () => undefined,
        (err: unknown) => this.log.warn({ batch: p.batch, err: (err as Error).message }, 'could not note which row runs alone'),
      );
    const rowWatch = (offset: number): RunWatch => ({ before: note(String(offset)), after: note('') });
    return { alone: { blamed, watch: (offset) => (mark ? mark.watch(rowWatch(offset)) : rowWatch(offset)) } };
  }

  /** Yield to interactive work, then (every `cancelCheckMs`) look whether the batch is still live. */
  private sliceGate(batch: string, mark?: ChunkRunMark): () => boolean | Promise<boolean> {
    let checkedAt = performance.now();
    const wait = async (busyGate: InteractiveGate | undefined): Promise<boolean> => {
      if (busyGate) {
        // Waiting for interactive work, the chunk is not in its run: a worker that dies meanwhile is not its stall.
        await mark?.setAside();
        await this.yieldTo(busyGate);
      }
      if (performance.now() - checkedAt >= this.cancelCheckMs) {
        checkedAt = performance.now();
        const status = await this.options.store.status(batch);
        if (status !== 'queued' && status !== 'running') return false;
        this.live = { batch, at: checkedAt };
      }
      return true;
    };
    return () => {
      // `busy` is read once a slice (a test's gate counts the reads).
      const busyGate = this.options.gate?.busy ? this.options.gate : undefined;
      // Most slices have nothing to wait for: answer at once, with no promise to await.
      if (!busyGate && performance.now() - checkedAt < this.cancelCheckMs) return true;
      return wait(busyGate);
    };
  }

  private async yieldTo(gate: InteractiveGate): Promise<void> {
    await awaitAtMost(gate.whenIdle(), this.maxYieldMs);
  }

  /**
   * A chunk that failed for a transient reason goes back to BullMQ, which
   * retries it with backoff. On its last attempt its rows are ended first
   * (failed, `retries_exhausted`), so the batch completes and nothing stays
   * `running`; if even that write fails, the worker's sweep ends them later.
   */
  private async failed(job: Job, token: string, err: Error): Promise<void> {
    const attempts = job.opts.attempts ?? 1;
    const parsed = BulkChunkPayload.safeParse(job.data);
    if (job.attemptsMade + 1 >= attempts && parsed.success) {
      const p = parsed.data;
      const { record, failed } = failChunk(p, { code: 'retries_exhausted', message: `the chunk failed ${attempts} times; the last time: ${err.message}` });
      try {
        const outcome = await this.options.store.finishChunk(p.batch, p.chunk, record, 0, failed, platformNow());
        if (outcome === 'ok' || outcome === 'completed') this.metrics?.bulkRowsEnded(0, failed + p.failures.length);
      } catch (e) {
        this.log.warn({ err: (e as Error).message, jobId: job.id }, 'could not end the rows of a chunk that failed for good; the sweep will');
      }
    }
    await this.settle(job, token, err);
  }

  /** Complete the chunk in BullMQ, or fail it (retried unless unrecoverable); release its lock either way. */
  private async settle(job: Job, token: string, err?: Error): Promise<void> {
    try {
      if (err) await job.moveToFailed(err, token, false);
      else await job.moveToCompleted(null, token, false);
    } catch (e) {
      this.log.warn({ jobId: job.id, err: (e as Error).message }, 'could not settle a bulk chunk in the queue');
    } finally {
      this.consumer.release(job.id!);
    }
  }
}

