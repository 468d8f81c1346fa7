import type { Redis } from 'ioredis';
import { DEADLINE_EXCEEDED, JOB_CATALOG, type EnvelopeJob, type JobError, platformNow } from '@infer/contract';
import { MicroBatcher } from '@infer/batcher';
import { CompletedEventsOutbox, EnvelopeQueue, JobStore, encodeRecord, hasCompletedHook, hasStartedHook, type FinishingEnvelope, type RecordOutput, type TakenEnvelope } from '@infer/job-store';
import type { Logger } from '@infer/logger';
import { runsUnderWay, type ModelVersion, type RunWatch } from '@infer/models';
import { setTimeout as sleep } from 'node:timers/promises';
import { LongRunWarning } from '../consumer/long-run-warning.js';
import { DEFAULT_MAX_RUN_MS } from '@infer/locks';
import { awaitAtMost } from '@infer/lifecycle';
import { QueueConsumer, type ConsumerSink, type ConsumerSource } from '../consumer/queue-consumer.js';
import type { VersionMetrics, WorkerMetrics } from '../metrics.js';
import { canceledIds, MalformedEnvelopeError, readEnvelope, type HeldEnvelope } from './envelope.js';
import type { JobWebhookEmitter } from './job-webhooks.js';
import { runMicrobatch } from './microbatch.js';
import { EnvelopeRunNotes } from './envelope-run-notes.js';
import { crashedOnInput } from '../poison-isolation.js';
import { instanceOutputBytes, outputLimits, outputTooLarge, outputsTooLargeTogether, type OutputLimits } from '../output-limits.js';
import { spanTime, type Tracing } from '@infer/tracing';
import { traceMicrobatch, type TracedJob } from './batch-tracing.js';

export interface InteractiveWorkerOptions {
  model: ModelVersion;
  /** BullMQ's connection: its stalled check and lock extension. */
  connection: Redis;
  /**
   * The queue's own scripts. Not BullMQ's connection: ioredis copies every
   * script defined on a connection (BullMQ defines ~65) into each pipeline
   * it builds, which on a shared one cost an eighth of the worker's CPU.
   */
  storeConnection: Redis;
  prefix: string;
  lockMs: number;
  /** WORKER_MAX_RUN_MS: the longest a model run may hold the event loop with this worker's locks kept. @default DEFAULT_MAX_RUN_MS */
  maxRunMs?: number;
  resultTtlMs: number;
  /** MAX_OUTPUT_BYTES: the most output bytes one job may keep; past it the job fails `output_too_large`. @default MAX_OUTPUT_BYTES_DEFAULT (16 MiB) */
  maxOutputBytes?: number;
  /** The most record bytes one FINISH call carries. @default CALL_OUTPUT_BYTES */
  callOutputBytes?: number;
  logger: Logger;
  metrics?: WorkerMetrics;
  /** Sends `job.started` for jobs that asked for it. */
  webhooks?: JobWebhookEmitter;
  /** Sends `job.completed` of the jobs ended here, exactly once (their ends put them on the queue's outbox). */
  outbox?: CompletedEventsOutbox;
  /**
   * Told how the jobs of each finished call ended, with their end-to-end
   * latencies: the figures a rollout judges by. Jobs canceled by a client
   * are left out; jobs still queued at their Cancel-After deadline count as
   * failed (the version did not serve them in time).
   */
  onEnded?: (succeeded: number, failed: number, latenciesMs: number[]) => void;
  /** When enabled: each micro-batch's spans, and its jobs' spans in their own traces (batch-tracing.ts). */
  tracing?: Tracing;
  /**
   * How long an idle worker blocks on the queue's marker before looking
   * again. `close()` does not wait for it (it drops the blocked connection).
   * @default 5 (seconds)
   */
  blockSeconds?: number;
}

/** A taken envelope before it is read, with the lock token it was taken with. */
interface Taken {
  taken: TakenEnvelope;
  token: string;
}

/** Part of an envelope in one micro-batch: some of its jobs (indices into its data.jobs). */
interface Slice {
  envelope: HeldEnvelope;
  jobs: number[];
}

/** How often a worker looks for jobs past their Cancel-After deadline. */
const DEADLINE_SWEEP_MS = 1000;
/**
 * Every how many deadline sweeps the outbox is drained too (and at the
 * first): for job.completed events a crashed worker left there. A worker's
 * own ends, and its deadline sweeps that cancel a job, drain it at once.
 */
const OUTBOX_SWEEP_EVERY = 5;

/** Longest a closing worker waits for a deadline sweep in flight (a few Redis round trips with Redis up). */
const SWEEP_STOP_MS = 1000;

/** Envelopes fetched in one call at most; their instances are bounded by the batch's room anyway. */
const MOST_ENVELOPES_PER_FETCH = 64;

/**
 * Consumes one model version's interactive queue and runs its jobs in
 * micro-batches made of whole envelopes.
 *
 * - Fetch (QueueConsumer): an idle worker blocks on the queue's marker,
 *   with its take sent behind the wait in the same write; a take is one
 *   script call that moves as many envelopes as the batch has
 *   room for to active, under one lock token, and says how many are left.
 *   Nothing left means nothing to wait for: the batch runs at once, so a
 *   lone job never waits, while a busy queue fills batches to
 *   `max_batch_size` (or `max_delay_ms` after their first instance).
 * - Batch: envelopes go into a batch whole; one that does not fit the room
 *   left goes into the next batch, and one is split across batches only
 *   when it holds more instances than a batch takes.
 * - Finish: when a batch has run, the envelopes it completed are ended in
 *   one script call: every job's record written (unless the job was
 *   canceled meanwhile), the envelopes removed, and one message per waiting
 *   gateway carrying the records its requests wait for.
 */
export class InteractiveWorker {
  readonly queue: EnvelopeQueue;
  private readonly consumer: QueueConsumer<Taken>;
  private readonly batcher: MicroBatcher<Slice, void>;
  private readonly longRuns: LongRunWarning;
  private readonly log: Logger;
  private blocking: Redis | undefined;
  /** Ends the blocking take in flight with nothing taken: set while one waits (see the source's close). */
  private abandonTake: (() => void) | undefined;
  /** Envelopes held and not yet finished; this model's bulk work waits while there are any. */
  private inHand = 0;
  /**
   * One promise for everyone waiting for inHand to reach 0: a bulk worker that gives up waiting (after
   * maxYieldMs) leaves nothing behind, where a resolver apiece piled up under unbroken interactive load.
   */
  private idle: { promise: Promise<void>; resolve: () => void } | undefined;
  private readonly finishing = new Set<Promise<void>>();
  /** Batches handed to runSlices whose model runs have not ended (see `runsNext`). */
  private batchRunsOwed = 0;
  /** Envelopes running their jobs alone (runAlone) that have not all run. */
  private aloneOwed = 0;
  /** The envelopes' notes that their runs began (see `source`). */
  private readonly runNotes: EnvelopeRunNotes;
  private readonly jobs: JobStore;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private outboxDrain: Promise<void> | undefined;
  private outboxAgain = false;
  private sweepingDeadlines: Promise<void> | undefined;
  /** This version's metrics, labels bound once: the batch path observes them with no allocation. */
  private readonly metrics: VersionMetrics | undefined;
  private readonly limits: OutputLimits;

  constructor(private readonly options: InteractiveWorkerOptions) {
    const { model } = options;
    this.log = options.logger.child({ model: model.name, version: model.version });
    this.metrics = options.metrics?.forVersion(model);
    this.longRuns = new LongRunWarning(options.maxRunMs ?? DEFAULT_MAX_RUN_MS, this.log);
    this.limits = outputLimits(options);
    this.queue = new EnvelopeQueue(options.storeConnection, { prefix: options.prefix, model: model.name, version: model.version, resultTtlMs: options.resultTtlMs });
    this.jobs = new JobStore(options.storeConnection, { prefix: options.prefix, resultTtlMs: options.resultTtlMs });
    this.runNotes = new EnvelopeRunNotes(this.queue, this.log);
    this.batcher = new MicroBatcher<Slice, void>({
      maxBatchSize: this.batchSize,
      maxWaitMs: model.maxDelayMs,
      maxInFlight: 2,
      weigh: (slice) => slice.jobs.length,
      run: (slices) => this.runSlices(slices),
    });
    this.consumer = new QueueConsumer<Taken>({
      queue: this.queue.keys.ref,
      connection: options.connection,
      logger: this.log,
      lockMs: options.lockMs,
      maxRunMs: options.maxRunMs ?? DEFAULT_MAX_RUN_MS,
      maxStalledCount: JOB_CATALOG.envelope.maxStalledCount,
      source: () => this.source(),
      sink: this.sink(),
    });
  }

  /** Instances in one run: `max_batch_size`, or one for a model that is not batched. */
  private get batchSize(): number {
    return Math.max(1, this.options.model.maxBatchSize);
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
    if (!this.idle) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.idle = { promise, resolve };
    }
    return this.idle.promise;
  }

  start(): void {
    this.queue.configure().catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'could not configure the queue'));
    this.consumer.start();
    let sweeps = 0;
    this.deadlineTimer = setInterval(() => {
      // Every second: jobs past their deadline; every OUTBOX_SWEEP_EVERY seconds, job.completed events a crash left on the outbox.
      const leftovers = sweeps++ % OUTBOX_SWEEP_EVERY === 0;
      this.sweepingDeadlines ??= this.sweepDeadlines()
        .then((canceled) => (leftovers || canceled > 0 ? this.options.outbox?.drain(this.queue.keys.outbox) : undefined))
        .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'deadline or outbox sweep failed'))
        .then(() => undefined)
        .finally(() => (this.sweepingDeadlines = undefined));
    }, DEADLINE_SWEEP_MS);
    this.deadlineTimer.unref();
  }

  /** Stop fetching, finish the batches in hand, then let go of Redis. Idempotent. */
  async close(): Promise<void> {
    clearInterval(this.deadlineTimer);
    // A sweep in flight waits for Redis while it is away (its commands queue offline): the consumer's close
    // must not start only once Redis is back. One that ends after this only cancels what is past its deadline.
    await awaitAtMost(this.sweepingDeadlines ?? Promise.resolve(), SWEEP_STOP_MS);
    await this.consumer.close();
    // The last batches' job.completed events (a crash before this leaves them to the next worker's sweep).
    await this.outboxDrain;
  }

  /** Drain the outbox in the background, one drain at a time: asked again while one runs, it runs once more after. */
  private drainOutbox(): void {
    const outbox = this.options.outbox;
    if (!outbox) return;
    if (this.outboxDrain) {
      this.outboxAgain = true;
      return;
    }
    this.outboxDrain = (async () => {
      do {
        this.outboxAgain = false;
        await outbox.drain(this.queue.keys.outbox).catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'outbox drain failed; the next one sends them'));
      } while (this.outboxAgain);
    })().finally(() => (this.outboxDrain = undefined));
  }

  /**
   * Jobs still queued at their Cancel-After deadline end canceled
   * (`deadline_exceeded`), now, without waiting for a worker to take their
   * envelope; one a worker has taken by then finishes (the cancel refuses a
   * job taken in time atomically; one taken only after its deadline ends
   * here too: JobStore.expirePastDeadline). Every worker of the queue looks each second; the
   * cancel's SET NX makes one of them the one that ends it. Answers how
   * many it canceled (the cancel put those with a job.completed webhook on
   * the outbox).
   */
  private async sweepDeadlines(): Promise<number> {
    const now = platformNow();
    const waitedMs: number[] = [];
    const canceled = await this.queue.sweepDeadlines(now, 100, async (id) => {
      const lookup = await this.jobs.read(id);
      if (lookup.kind !== 'pending' || !(await this.jobs.expirePastDeadline(lookup, now))?.canceled) return false;
      this.metrics?.jobEnded('canceled');
      waitedMs.push(now - lookup.job.created_at);
      return true;
    });
    // Failures to a rollout, as at a take (finish): the version kept them queued past their deadlines.
    if (waitedMs.length > 0) this.options.onEnded?.(0, waitedMs.length, waitedMs);
    return canceled;
  }

  /**
   * Takes, so that a worker that dies or hangs in a run counts a stall of
   * their own only to the envelopes of that run (FETCH's `rt`): those held
   * beside it are put back with no mark against them.
   * - A blocking take (an idle worker's, or one whose last take emptied the
   *   queue) notes what it brings when nothing but this worker's own batches
   *   is to run first (`runsNext`): at one job at a time, no command more a
   *   job. Should another's run start before theirs all the same (this
   *   worker's batch before them, a bulk slice), it clears their notes first
   *   (EnvelopeRunNotes).
   * - Envelopes of any other take (a take while batches come one after
   *   another) are noted in the batch's own call, written just before its
   *   run (EnvelopeRunNotes.watch).
   * Left: Redis serves a blocking take whenever work comes, maybe while a
   * run is under way (this worker's batch, or other work's that started
   * after the take was sent): should that run kill the worker before the
   * take's reply is read, the take's envelopes count the stall as theirs, as
   * every envelope held did before. They then run their jobs one at a time
   * once, and a poison input taken again runs alone, so its later crashes
   * are not theirs.
   */
  private source(): ConsumerSource<Taken> {
    const blockSeconds = this.options.blockSeconds ?? 5;
    return {
      jobId: (t) => t.taken.id,
      fetch: async (token, room, block) => {
        let taken;
        if (block) {
          // Idle: wait on the marker (every enqueue sets it), with the take sent behind the wait in the same write.
          if (!this.blocking) {
            this.blocking = this.options.storeConnection.duplicate();
            // Its errors (Redis away) fail the take, which the consumer retries: not an unhandled 'error' event.
            this.blocking.on('error', () => undefined);
          }
          const abandoned = new Promise<'abandoned'>((resolve) => (this.abandonTake = () => resolve('abandoned')));
          try {
            taken = await Promise.race([
              this.queue.waitAndFetch(this.blocking, blockSeconds, token, this.options.lockMs, room, MOST_ENVELOPES_PER_FETCH, { runsNext: this.runsNext() }),
              abandoned,
            ]);
          } finally {
            this.abandonTake = undefined;
          }
          if (taken === 'abandoned') return { items: [], drained: true };
        } else {
          taken = await this.queue.fetch(token, this.options.lockMs, room, MOST_ENVELOPES_PER_FETCH, { runsNext: false });
        }
        if (taken === 'paused') {
          await sleep(1000);
          return { items: [], drained: true };
        }
        return { items: taken.envelopes.map((e) => ({ taken: e, token })), drained: taken.waiting === 0 };
      },
      close: async () => {
        // A take may be riding behind the wait. disconnect() half-closes (ioredis ends the stream): a reply Redis
        // sent before it read the close is still read, so what such a take found comes back and runs before the
        // worker closes; and Redis drops a client whose close it read before serving its wait, so no take runs after.
        const blocking = this.blocking;
        if (!blocking) return;
        const live = blocking.status === 'ready';
        blocking.disconnect();
        // Not ready (Redis just came back, or is away): the take waits in ioredis' queue for the reconnect (sent
        // again then, if the socket that died had carried it). Disconnected between two reconnect attempts, ioredis
        // clears its retry timer without a 'close' event, and that queue is neither sent nor failed, ever: end the
        // take now, with nothing taken, instead of letting the close wait out its bound on it. (What a take that
        // died with its socket had locked is put back by the stalled check, as after any lost reply.)
        if (!live) this.abandonTake?.();
      },
    };
  }

  private sink(): ConsumerSink<Taken> {
    return {
      room: () => this.batcher.room,
      whenRoom: () => this.batcher.whenRoom(),
      idle: () => this.batcher.size === 0,
      accept: (items, _token, drained) => {
        for (const item of items) this.accept(item);
        if (drained) this.batcher.drained();
      },
      drained: () => this.batcher.drained(),
      settled: async () => {
        await this.batcher.close();
        while (this.finishing.size > 0) await Promise.allSettled([...this.finishing]);
      },
    };
  }

  /**
   * Whether what a take sent now brings runs next in this process, after
   * this worker's batches already on their way: no envelope of it runs
   * alone, none is collecting, and no other work's run (another version's,
   * a bulk slice) is under way or waiting its turn (more runs than this
   * worker's owed batches).
   */
  private runsNext(): boolean {
    return this.aloneOwed === 0 && this.batcher.size === 0 && runsUnderWay() <= this.batchRunsOwed;
  }

  /** Read a taken envelope and put its jobs in batches (or end them now, when none is to run). */
  private accept({ taken, token }: Taken): void {
    // The take as Redis stamped it (not when its reply was read): what a read of its running jobs says as
    // started_at, and so what their records, queue_ms and job.started say.
    const { takenAt } = taken;
    const { model } = this.options;
    this.inHand++;
    let held: HeldEnvelope;
    try {
      held = readEnvelope(model, taken, token, takenAt);
    } catch (err) {
      if (!(err instanceof MalformedEnvelopeError)) throw err;
      this.log.error({ envelope: taken.id, err: err.message }, 'malformed envelope; its jobs fail');
      this.failMalformed(taken, token, err.message);
      return;
    }
    this.runNotes.taken(held);
    this.expire(held);
    this.failMisfits(held);
    // Tracked: a worker that closes waits for them (they are tried again for a second or so while Redis errs).
    // Not again on a take after a stall once a take has made them (`ws`): by then they may have expired.
    const webhooks = this.options.webhooks;
    if (webhooks && !taken.fields.has('ws')) {
      const jobs = held.data.jobs.filter((_, i) => held.inputs[i]).map((job) => ({ model: model.name, version: model.version, job }));
      // Until they are known made, a job that ends has FINISH put its job.started on the outbox too.
      const owed = held.data.jobs.flatMap((job, i) => (held.inputs[i] && hasStartedHook(job) ? [i] : []));
      if (owed.length > 0) held.startedOwed = new Set(owed);
      this.track(
        webhooks.started(jobs, takenAt).then(async (made) => {
          if (!made) return;
          held.startedOwed = undefined;
          await this.queue.markStartedSent(held.id).catch((err: unknown) => {
            // Only a take after a stall reads it: that one makes none twice while their log entries live.
            this.log.warn({ envelope: held.id, err: (err as Error).message }, 'could not mark job.started sent on the envelope');
          });
        }),
      );
    }
    const deferred = taken.fields.get('defa')?.toString();
    if (deferred) {
      // Stalled more than maxStalledCount times: it keeps killing or hanging its workers; it must not run again.
      this.endAll(held, workerLost(deferred));
      return;
    }
    if (held.pending === 0) {
      this.track(this.finish([held]));
      return;
    }
    if (taken.ownStalls > 0) {
      // A worker died or hung in a run of it, maybe on one of its inputs (ONNX Runtime can crash the
      // process: an integer overflow's SIGFPE). One only held beside another's run has no stall of its own.
      this.aloneOwed++;
      this.track(this.runAlone(held, taken.fields.get('run')?.toString()).finally(() => this.aloneOwed--));
      return;
    }
    const live = held.inputs.flatMap((inputs, i) => (inputs ? [i] : []));
    // Whole, split only when it must: an envelope bigger than a batch. One that does not fit the room left
    // goes whole into the next batch (the batcher runs the one collecting without it): split across two, the
    // jobs of its first part would end only when the second had run, after the completed_at they carry.
    for (let from = 0; from < live.length; ) {
      const take = Math.min(live.length - from, this.batchSize);
      this.batcher.add({ envelope: held, jobs: live.slice(from, from + take) }).catch((err: unknown) => {
        // runSlices settles every job itself; this is a bug guard, not a path.
        this.log.error({ err, envelope: held.id }, 'micro-batch failed unexpectedly');
      });
      from += take;
    }
  }

  /**
   * An envelope taken again after a stall of its own runs outside
   * micro-batches, one job at a time, each noted on the envelope
   * (MARK_RUNNING, with the take: its run began) in its turn
   * before its run and the note cleared after it (runModel's RunWatch:
   * while a noted job runs, nothing else does in this process). A worker
   * that dies or hangs on a job's input then leaves that job's id there, and
   * the next take fails that job alone (`inference_failed`) and runs the
   * others: a crashing input costs two workers (its batch's, then its own),
   * and the jobs that were batched with it end as if it had not been there,
   * instead of all ending `worker_lost` at the third stall. (Two crashing
   * inputs in one envelope cost a stall each: the third ends the rest
   * `worker_lost`.)
   */
  private async runAlone(held: HeldEnvelope, blamed: string | undefined): Promise<void> {
    const { model } = this.options;
    const at = held.data.jobs.findIndex((job, i) => job.id === blamed && held.inputs[i]);
    if (at >= 0) {
      const job = held.data.jobs[at]!;
      this.log.error({ jobId: job.id, envelope: held.id }, "a worker died or hung running this job's input alone; the job fails, the others run");
      held.inputs[at] = null;
      held.pending--;
      held.statuses[at] = 'failed';
      held.records[at] = encodeRecord(model.name, model.version, job, { status: 'failed', startedAt: held.takenAt, completedAt: platformNow(), error: crashedOnInput() });
      if (held.pending === 0) return this.finish([held]);
    }
    for (let i = 0; i < held.data.jobs.length; i++) {
      if (!held.inputs[i]) continue;
      const id = held.data.jobs[i]!.id;
      const note = (jobId: string | null) => () =>
        this.queue.markRunning(held.id, held.token, jobId, held.take).then(
          () => undefined,
          (err: unknown) => this.log.warn({ envelope: held.id, err: (err as Error).message }, 'could not note which job runs alone'),
        );
      await this.runSlices([{ envelope: held, jobs: [i] }], { before: note(id), after: note(null) });
    }
  }

  /** Run one micro-batch, then end the envelopes it completed. */
  private async runSlices(slices: Slice[], watch?: RunWatch): Promise<void[]> {
    const { model } = this.options;
    const instances = slices.flatMap((s) => s.jobs.map((j) => s.envelope.inputs[j]!));
    const tracing = this.options.tracing?.enabled ? this.options.tracing : undefined;
    // The span is on this host's clock, as its runs' are; the records' stamps are on the platform's.
    const tracedFrom = tracing ? spanTime() : 0;
    // A batch's run (an alone job's is owed by its envelope: runAlone).
    if (!watch) this.batchRunsOwed++;
    let ran: Awaited<ReturnType<typeof runMicrobatch>>;
    try {
      ran = await runMicrobatch(model, instances, watch ?? this.runNotes.watch([...new Set(slices.map((s) => s.envelope))]));
    } finally {
      if (!watch) this.batchRunsOwed--;
    }
    const { results, runs } = ran;
    const tracedTo = tracing ? spanTime() : 0;
    const completedAt = platformNow();
    const traced: TracedJob[] | undefined = tracing ? [] : undefined;
    let r = 0;
    const done = new Set<HeldEnvelope>();
    for (const { envelope, jobs } of slices) {
      // The bytes of the envelope's records so far: one FINISH call carries them all (callOutputBytes).
      let stored = storedBytes(envelope);
      for (const j of jobs) {
        const result = results[r++]!;
        const job = envelope.data.jobs[j]!;
        if (!result.ok) this.log.warn({ jobId: job.id, err: result.error.message }, 'a job failed in ONNX Runtime; the jobs batched with it ran without it');
        const metricsOut = { queue_ms: Math.max(0, envelope.takenAt - job.created_at), inference_ms: round(result.inferenceMs), batch_size: result.batchSize };
        envelope.ran[j] = { at: completedAt, metrics: metricsOut };
        const ending = result.ok ? this.keepable(job, result.outputs, stored) : { error: result.error };
        // Its span says how the job ended: a run whose outputs were too large to keep failed it.
        traced?.push({ job, takenAt: envelope.takenAt, result: 'error' in ending ? { ok: false, error: ending.error, inferenceMs: result.inferenceMs, batchSize: result.batchSize } : result });
        if ('outputs' in ending) stored += ending.bytes;
        envelope.statuses[j] = 'outputs' in ending ? 'succeeded' : 'failed';
        envelope.records[j] = encodeRecord(model.name, model.version, job, {
          status: envelope.statuses[j]!,
          startedAt: envelope.takenAt,
          completedAt,
          metrics: metricsOut,
          ...('outputs' in ending ? { outputs: ending.outputs } : { error: ending.error }),
        });
        envelope.pending--;
      }
      if (envelope.pending === 0) done.add(envelope);
    }
    this.metrics?.runs(runs);
    this.longRuns.observe(runs);
    if (tracing) traceMicrobatch(tracing, model, traced!, runs, tracedFrom, tracedTo);
    await this.finish([...done]);
    return slices.map(() => undefined);
  }

  /**
   * A run's outputs for a job's record, or the error it fails with when they
   * are too large to keep (output-limits.ts): over MAX_OUTPUT_BYTES, or past
   * CALL_OUTPUT_BYTES beside the `stored` bytes of its envelope's records.
   */
  private keepable(job: EnvelopeJob, outputs: RecordOutput[], stored: number): { outputs: RecordOutput[]; bytes: number } | { error: JobError } {
    const bytes = instanceOutputBytes(outputs);
    let error: JobError | undefined;
    const { maxOutputBytes, callOutputBytes } = this.limits;
    if (bytes > maxOutputBytes) error = outputTooLarge(bytes, maxOutputBytes);
    else if (stored + bytes > callOutputBytes) error = outputsTooLargeTogether(bytes, 'the jobs submitted with it (its envelope)', callOutputBytes);
    if (!error) return { outputs, bytes };
    this.log.warn({ jobId: job.id, bytes }, "a job's outputs are too large to keep; it fails output_too_large");
    return { error };
  }

  /**
   * Jobs still queued at their Cancel-After deadline never run: they end
   * canceled (`deadline_exceeded`). What counts is the envelope's first
   * take, as Redis recorded it, not this worker's: a job taken in time by a
   * worker that then died had started, and runs again like any other.
   */
  private expire(held: HeldEnvelope): void {
    const { model } = this.options;
    held.data.jobs.forEach((job, i) => {
      if (!held.inputs[i] || job.deadline === undefined || job.deadline > held.firstTakenAt) return;
      held.inputs[i] = null;
      held.pending--;
      held.statuses[i] = 'canceled';
      held.records[i] = encodeRecord(model.name, model.version, job, { status: 'canceled', startedAt: null, completedAt: held.takenAt, error: DEADLINE_EXCEEDED });
    });
  }

  /** The live jobs whose inputs do not fit this worker's copy of the model fail, each with its own reason; the others run. */
  private failMisfits(held: HeldEnvelope): void {
    const { model } = this.options;
    let failed = 0;
    for (const [i, message] of held.misfits) {
      if (!held.inputs[i]) continue;
      const job = held.data.jobs[i]!;
      held.inputs[i] = null;
      held.pending--;
      held.statuses[i] = 'failed';
      held.records[i] = encodeRecord(model.name, model.version, job, { status: 'failed', startedAt: held.takenAt, completedAt: platformNow(), error: { code: 'invalid_input', message } });
      failed++;
    }
    if (failed > 0) this.log.error({ envelope: held.id, jobs: failed, example: held.misfits.values().next().value }, "jobs whose inputs do not fit this worker's copy of the model fail (is model.onnx the same on every host?)");
  }

  /** Every live job of an envelope fails with `error` (it cannot or must not run). */
  private endAll(held: HeldEnvelope, error: JobError): void {
    const { model } = this.options;
    const completedAt = platformNow();
    held.data.jobs.forEach((job, i) => {
      if (!held.inputs[i]) return;
      held.statuses[i] = 'failed';
      held.records[i] = encodeRecord(model.name, model.version, job, { status: 'failed', startedAt: held.takenAt, completedAt, error });
    });
    held.pending = 0;
    this.track(this.finish([held]));
  }

  /** An envelope whose data or inputs do not fit the model: its jobs fail, or, when even its jobs are unknown, it is dropped. */
  private failMalformed(taken: TakenEnvelope, token: string, message: string): void {
    const { model } = this.options;
    let held: HeldEnvelope | undefined;
    try {
      const data = JSON.parse(taken.fields.get('data')?.toString() ?? '') as HeldEnvelope['data'];
      if (Array.isArray(data.jobs)) {
        const canceled = canceledIds(taken);
        const inputs = data.jobs.map((job) => (canceled.has(job.id) ? null : []));
        held = { id: taken.id, token, data, takenAt: platformNow(), firstTakenAt: taken.firstTakenAt, take: taken.take, runBegan: taken.runBegan, inputs, records: data.jobs.map(() => null), statuses: data.jobs.map(() => null), ran: data.jobs.map(() => null), pending: inputs.filter(Boolean).length, misfits: new Map() };
        // What ends a job whatever its envelope holds comes first (its inputs lost in Redis, say): a deadline
        // passed before the first take (canceled, deadline_exceeded), and an envelope that kept killing its workers.
        this.expire(held);
      }
    } catch {
      /* nothing to tell any job */
    }
    held ??= { id: taken.id, token, data: { model: model.name, version: model.version, gateway: '', jobs: [] }, takenAt: platformNow(), firstTakenAt: taken.firstTakenAt, take: taken.take, runBegan: taken.runBegan, inputs: [], records: [], statuses: [], ran: [], pending: 0, misfits: new Map() };
    const deferred = taken.fields.get('defa')?.toString();
    this.endAll(held, deferred ? workerLost(deferred) : { code: 'invalid_input', message });
  }

  private track(p: Promise<void>): void {
    this.finishing.add(p);
    void p.finally(() => this.finishing.delete(p));
  }

  /**
   * End envelopes whose jobs all have their records: one script call, or a
   * few when their records are large. A call that fails (Redis away) is
   * tried again a few times; after that its envelopes are let go, so their
   * locks lapse and the stalled check puts them back for another worker: no
   * job is dropped.
   */
  private async finish(envelopes: HeldEnvelope[]): Promise<void> {
    if (envelopes.length === 0) return;
    // One call for the batch, unless its records are large: then calls of at most callOutputBytes of records
    // each (an envelope's own records are held under it as they are made: keepable), so no call nears Redis's
    // 1 GB limit on one command. Each call ends its envelopes whole.
    if (envelopes.length === 1) return this.finishCall(envelopes);
    const calls: HeldEnvelope[][] = [[]];
    let bytes = 0;
    for (const e of envelopes) {
      const size = storedBytes(e);
      if (calls[calls.length - 1]!.length > 0 && bytes + size > this.limits.callOutputBytes) {
        calls.push([]);
        bytes = 0;
      }
      calls[calls.length - 1]!.push(e);
      bytes += size;
    }
    // Every call is made, whatever an earlier one threw: each releases its own envelopes.
    let thrown: unknown;
    for (const call of calls) await this.finishCall(call).catch((err: unknown) => (thrown ??= err));
    if (thrown !== undefined) throw thrown;
  }

  /** `finish` for envelopes whose records one script call can carry. */
  private async finishCall(envelopes: HeldEnvelope[]): Promise<void> {
    for (const e of envelopes) this.runNotes.ended(e);
    const finishing: FinishingEnvelope[] = envelopes.map((e) => ({
      id: e.id,
      gateway: e.data.gateway,
      jobs: e.data.jobs.map((job, i) => ({
        id: job.id,
        record: e.records[i] ?? null,
        wait: job.wait === true,
        deadline: job.deadline !== undefined,
        completedHook: hasCompletedHook(job),
        startedOwed: e.startedOwed?.has(i) === true,
      })),
    }));
    let ended: boolean[] | undefined;
    for (let attempt = 0; ended === undefined; attempt++) {
      try {
        ended = await this.queue.finish(finishing);
      } catch (err) {
        if (attempt >= 3) {
          this.log.warn({ err: (err as Error).message, envelopes: envelopes.length }, 'could not end a batch; its envelopes go back to the queue when their locks lapse');
          break;
        }
        await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
      }
    }
    for (const e of envelopes) this.consumer.release(e.id);
    this.inHand -= envelopes.length;
    if (this.inHand === 0) {
      this.idle?.resolve();
      this.idle = undefined;
    }
    if (!ended) return;
    let k = 0;
    let hooks = 0;
    const keyed: EnvelopeJob[] = [];
    const figures = this.options.onEnded ? { succeeded: 0, failed: 0, latencies: [] as number[], now: platformNow() } : undefined;
    // One info line per job that ran, built only when info is on (the object is the line: nothing else per job).
    const logJobs = this.log.isLevelEnabled('info');
    for (const e of envelopes) {
      e.data.jobs.forEach((job, i) => {
        const written = ended![k++] === true;
        const ran = e.ran[i];
        if (ran && logJobs) {
          // model and version are the child logger's; the trace id is the traceparent's second field. A run
          // whose end lost (the job was canceled while it ran, or ended elsewhere) says so, not how it ran.
          const status = written ? e.statuses[i] : 'discarded';
          this.log.info({ jobId: job.id, status, ...ran.metrics, traceId: job.traceparent?.slice(3, 35) }, 'job ended');
        }
        if (!written || !e.records[i]) return;
        if (hasCompletedHook(job) || e.startedOwed?.has(i)) hooks++;
        if (job.idempotency !== undefined) keyed.push(job);
        const status = e.statuses[i] ?? 'failed';
        this.metrics?.jobEnded(status);
        // Observed here, once its end is written, not when it ran: a run whose end lost to a cancel, or
        // failed to be written and ran again elsewhere, is not a job's latency.
        if (ran) this.metrics?.jobRan(Math.max(0, e.takenAt - job.created_at), ran.at - job.created_at);
        // A job canceled here was still queued at its deadline (expire): to a rollout, a version that
        // kept its clients waiting past their deadlines failed them.
        if (figures) {
          figures[status === 'succeeded' ? 'succeeded' : 'failed']++;
          figures.latencies.push(figures.now - job.created_at);
        }
      });
    }
    if (figures && figures.latencies.length > 0) this.options.onEnded!(figures.succeeded, figures.failed, figures.latencies);
    if (keyed.length > 0) {
      this.jobs.shortenIdempotencyKeys(keyed).catch((err: unknown) => this.log.warn({ err: (err as Error).message }, "could not shorten ended jobs' Idempotency-Keys; they expire 24 h after their claims"));
    }
    // FINISH put the jobs with a job.completed webhook on the outbox: send their events now, beside the
    // next batches rather than ahead of them (a batch's slot is not held for its webhooks).
    if (hooks > 0) this.drainOutbox();
  }
}

const round = (ms: number) => Math.round(ms * 1000) / 1000;

/** The bytes of the records an envelope's jobs have so far. */
function storedBytes(envelope: HeldEnvelope): number {
  let n = 0;
  for (const record of envelope.records) n += record?.byteLength ?? 0;
  return n;
}

/** The error of the jobs of an envelope stalled more than maxStalledCount times (BullMQ's `defa`: why it was deferred). */
function workerLost(deferred: string): JobError {
  return { code: 'worker_lost', message: `the job's worker died or hung repeatedly (${deferred})` };
}
