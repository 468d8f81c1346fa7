import { closeInOrder } from '@infer/lifecycle';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { InferPayload, inferQueueName, type JobError } from '@infer/contract';
import { isAppError } from '@infer/errors';
import type { JobEnding, JobStore } from '@infer/job-store';
import type { Logger } from '@infer/logger';
import type { ModelVersion } from '@infer/models';
import { MicroBatcher } from '@infer/batcher';
import { decodeEncoded } from '@infer/tensors';
import { runBatch, type InstanceInputs } from './batch-runner.js';
import { LockKeeper } from './lock-keeper.js';
import type { WorkerMetrics } from './metrics.js';
import type { JobWebhookEmitter } from './webhook-emitter.js';

export interface ModelWorkerOptions {
  model: ModelVersion;
  /** A connection for BullMQ (it duplicates one for blocking fetches). */
  connection: Redis;
  store: JobStore;
  logger: Logger;
  prefix: string;
  lockMs: number;
  metrics?: WorkerMetrics;
  /** Emits `job.started` / `job.completed` webhook events for jobs that have a webhook. */
  webhooks?: JobWebhookEmitter;
  /**
   * How long a blocking fetch waits for a job before looking again. It bounds
   * how long `close()` waits for an idle fetch to return.
   * @default 1 (second)
   */
  blockSeconds?: number;
}

interface HeldJob {
  job: Job;
  token: string;
  inputs: InstanceInputs;
}

/**
 * Consumes one model version's queue and runs its jobs in micro-batches.
 *
 * BullMQ's Worker runs one job per processor call, so this fetches by hand
 * (BullMQ's "manual fetching" pattern) to know exactly when the queue has
 * nothing more: the fetch loop takes a job with a blocking fetch when no batch
 * is collecting, and with a non-blocking one while a batch collects. An empty
 * non-blocking fetch tells the batcher to flush at once, so a lone job waits
 * for nothing, while a busy queue fills batches up to `max_batch_size` (or
 * `max_delay_ms` after their first job).
 */
export class ModelWorker {
  private readonly worker: Worker;
  private readonly batcher: MicroBatcher<HeldJob, void>;
  private readonly locks: LockKeeper;
  private readonly log: Logger;
  private loop: Promise<void> | undefined;
  private stopping = false;
  private closing: Promise<void> | undefined;
  private tokenSeq = 0;
  private fanout = 1;
  /** Interactive jobs fetched and not yet settled; this model's bulk work waits while there are any. */
  private inHand = 0;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly options: ModelWorkerOptions) {
    const { model } = options;
    this.log = options.logger.child({ model: model.name, version: model.version });
    this.worker = new Worker(inferQueueName(model.name, model.version), null, {
      connection: options.connection,
      prefix: options.prefix,
      autorun: false,
      lockDuration: options.lockMs,
      stalledInterval: Math.max(1000, Math.floor(options.lockMs / 2)),
      maxStalledCount: 2,
      drainDelay: options.blockSeconds ?? 1,
    });
    this.worker.on('error', (err) => this.log.warn({ err: err.message }, 'bullmq worker error'));
    this.worker.on('stalled', (jobId) => this.log.warn({ jobId }, 'job stalled (its worker died or hung); requeued'));
    this.locks = new LockKeeper(options.lockMs, this.log);
    this.batcher = new MicroBatcher<HeldJob, void>({
      maxBatchSize: Math.max(1, model.maxBatchSize),
      maxWaitMs: model.maxDelayMs,
      maxInFlight: 2,
      run: (held) => this.runHeld(held),
    });
  }

  /**
   * The fairness signal for this model's BulkWorker: true while interactive
   * jobs are in hand (fetched, collecting or running). Bulk slices wait for
   * `whenIdle()`, so interactive batches never queue behind bulk work here.
   */
  get busy(): boolean {
    return this.inHand > 0;
  }

  /** Resolves when no interactive job is in hand. */
  whenIdle(): Promise<void> {
    if (this.inHand === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  start(): void {
    if (this.loop) return;
    void this.worker.startStalledCheckTimer();
    this.loop = this.fetchLoop().catch((err: unknown) => {
      this.log.error({ err }, 'fetch loop crashed');
    });
  }

  /** Stop fetching, finish the batches in hand, then let go of Redis. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.stopping = true;
      const steps: Array<() => unknown> = [
        async () => this.loop,
        () => this.batcher.close(),
        async () => this.locks.stop(),
        () => this.worker.close(),
      ];
      await closeInOrder(steps, (err) => this.log.warn({ err: (err as Error).message }, 'close step failed'));
    })();
    return this.closing;
  }

  /**
   * While a batch collects, non-blocking fetches go out several at once (up
   * to FETCH_FANOUT; each is one atomic moveToActive in Redis), so filling a
   * batch from a backlog costs a few round trips rather than one per job.
   */
  private async fetchLoop(): Promise<void> {
    while (!this.stopping) {
      await this.batcher.whenRoom();
      if (this.stopping) break;
      const block = this.batcher.size === 0;
      const fanout = block ? 1 : Math.max(1, Math.min(this.fanout, this.batcher.room));
      const tokens = Array.from({ length: fanout }, () => `${this.worker.id}:${this.tokenSeq++}`);
      let jobs: Array<Job | undefined>;
      try {
        jobs = await Promise.all(tokens.map((token) => this.worker.getNextJob(token, { block })));
      } catch (err) {
        if (this.stopping) break;
        this.log.warn({ err: (err as Error).message }, 'fetch failed; retrying');
        this.batcher.drained();
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      jobs.forEach((job, i) => {
        if (job) this.accept(job, tokens[i]!);
      });
      const empty = jobs.some((job) => !job);
      if (!block && empty) this.batcher.drained();
      // Widen while every fetch finds a job, back to one as soon as one comes
      // back empty: a lone job costs one extra round trip, a backlog a few.
      this.fanout = empty ? 1 : Math.min(FETCH_FANOUT, this.fanout * 2);
    }
  }


  /** Validate a fetched job again (never trust the queue) and hand it to the batcher. */
  private accept(job: Job, token: string): void {
    this.locks.hold(job, token);
    // BullMQ marks a job that stalled more than maxStalledCount times (it
    // keeps killing or hanging its workers) as a deferred failure; it must
    // end as failed here rather than run again.
    if (job.deferredFailure) {
      void this.failUnrecoverable(job, token, new Error(`the job's worker died or hung repeatedly (${job.deferredFailure})`), 'worker_lost');
      return;
    }
    let inputs: InstanceInputs;
    try {
      inputs = this.decode(job);
    } catch (err) {
      void this.failUnrecoverable(job, token, err);
      return;
    }
    this.inHand++;
    this.batcher
      .add({ job, token, inputs })
      .catch((err: unknown) => {
        // runHeld settles every job itself; this is a bug guard, not a path.
        this.log.error({ err, jobId: job.id }, 'batch failed unexpectedly');
      })
      .finally(() => {
        if (--this.inHand > 0) return;
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const wake of waiters) wake();
      });
  }

  private decode(job: Job): InstanceInputs {
    const parsed = InferPayload.safeParse(job.data);
    if (!parsed.success) throw new UnrecoverableError(`malformed queue payload: ${parsed.error.issues[0]?.message}`);
    const { model } = this.options;
    const inputs: InstanceInputs = {};
    for (const spec of model.inputs) {
      const enc = parsed.data.inputs[spec.name];
      if (!enc) throw new UnrecoverableError(`missing input "${spec.name}"`);
      inputs[spec.name] = decodeEncoded(enc, spec);
    }
    return inputs;
  }

  /**
   * A batch that could not be run or recorded (Redis went away mid-batch,
   * say) goes back to BullMQ as a plain failure, so its attempts and backoff
   * retry it; if even that fails, releasing the locks lets the stalled check
   * requeue it. No job is dropped either way.
   */
  private async runHeld(held: HeldJob[]): Promise<void[]> {
    try {
      return await this.runBatchOf(held);
    } catch (err) {
      this.log.warn({ err: (err as Error).message, jobs: held.length }, 'batch failed; handing its jobs back to the queue');
      await Promise.all(held.map((h) => this.fail(h, err instanceof Error ? err : new Error(String(err)))));
      return held.map(() => undefined);
    }
  }

  /** Run one batch: mark the jobs running, infer, store every result, then complete them in BullMQ. */
  private async runBatchOf(held: HeldJob[]): Promise<void[]> {
    const { store, model, metrics } = this.options;
    const startedAt = Date.now();
    const before = await store.start(
      held.map((h) => h.job.id!),
      startedAt,
    );
    // Not awaited: the webhook jobs' records are read while the model runs.
    const hooks = this.options.webhooks?.started(
      held.map((h) => ({ id: h.job.id!, data: h.job.data as unknown })),
      before,
    );
    // A job canceled (or already ended, or expired) while queued is not run.
    const live = held.filter((_, i) => before[i] === 'queued' || before[i] === 'running');
    const skipped = held.filter((_, i) => !(before[i] === 'queued' || before[i] === 'running'));

    const results = live.length ? await runBatch(model, live.map((h) => h.inputs)) : [];
    const completedAt = Date.now();
    const endings: JobEnding[] = live.map((h, i) => {
      const r = results[i]!;
      const metricsOut = { queue_ms: Math.max(0, startedAt - h.job.timestamp), inference_ms: round(r.inferenceMs), batch_size: r.batchSize };
      return r.ok
        ? { id: h.job.id!, status: 'succeeded', completedAt, output: r.output, metrics: metricsOut }
        : { id: h.job.id!, status: 'failed', completedAt, error: r.error, metrics: metricsOut };
    });
    const ended = await store.end(endings);
    metrics?.observeBatch(model, results);

    await Promise.all([
      hooks?.completed(endings, ended),
      ...live.map((h, i) =>
        results[i]!.ok ? this.complete(h) : this.fail(h, new UnrecoverableError((results[i] as { error: JobError }).error.message)),
      ),
      ...skipped.map((h) => this.complete(h)),
    ]);
    return held.map(() => undefined);
  }

  private async complete(h: HeldJob): Promise<void> {
    try {
      await h.job.moveToCompleted(null, h.token, false);
    } catch (err) {
      this.log.warn({ jobId: h.job.id, err: (err as Error).message }, 'could not mark a job completed in the queue');
    } finally {
      this.locks.release(h.job.id!);
    }
  }

  private async fail(h: HeldJob, err: Error): Promise<void> {
    try {
      await h.job.moveToFailed(err, h.token, false);
    } catch (e) {
      this.log.warn({ jobId: h.job.id, err: (e as Error).message }, 'could not mark a job failed in the queue');
    } finally {
      this.locks.release(h.job.id!);
    }
  }

  /** Bad input that got past the gateway (or an old payload): fail it for good, with its reason on the record. */
  private async failUnrecoverable(job: Job, token: string, err: unknown, code = 'invalid_input'): Promise<void> {
    const message = isAppError(err) || err instanceof Error ? err.message : String(err);
    const error: JobError = { code, message };
    let ended = false;
    try {
      [ended = false] = await this.options.store.end([{ id: job.id!, status: 'failed', completedAt: Date.now(), error }]);
    } catch (e) {
      this.log.warn({ jobId: job.id, err: (e as Error).message }, 'could not record a failed job');
    }
    if (ended) await this.options.webhooks?.completedOne(job.id!, job.data as unknown);
    await this.fail({ job, token, inputs: {} }, new UnrecoverableError(message));
  }
}

/** Non-blocking fetches in flight at once while a batch collects. */
const FETCH_FANOUT = 8;

const round = (ms: number) => Math.round(ms * 1000) / 1000;
