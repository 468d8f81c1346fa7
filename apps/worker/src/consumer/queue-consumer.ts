import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { QueueRef } from '@infer/contract';
import { awaitAtMost, closeInOrder } from '@infer/lifecycle';
import type { Logger } from '@infer/logger';
import { DEFAULT_MAX_RUN_MS, LockKeeper } from '@infer/locks';

/** How a consumer takes work from its queue. */
export interface ConsumerSource<T> {
  /**
   * Take up to `room` units of work, each locked with `token`. With `block`,
   * wait (up to the block time) for work when none is waiting. `drained`:
   * nothing more was waiting after this take.
   */
  fetch(token: string, room: number, block: boolean): Promise<{ items: T[]; drained: boolean }>;
  /** The BullMQ job id of an item, under which its lock is held. */
  jobId(item: T): string;
  /** Stop a blocked fetch and let go of what the source opened. */
  close?(): Promise<void>;
}

/** What a consumer feeds: the processing side, which says how much it can take. */
export interface ConsumerSink<T> {
  /** Units of work it can take now; 0 makes the consumer wait for `whenRoom`. */
  room(): number;
  whenRoom(): Promise<void>;
  /**
   * True when nothing is collecting, so the next fetch may block until work
   * arrives. (The consumer blocks after a look that found the queue empty
   * too, whatever this says.)
   */
  idle(): boolean;
  /** Fetched items, locked with `token` until the sink calls `consumer.release`. */
  accept(items: T[], token: string, drained: boolean): void;
  /** The source had nothing (or failed): flush what is collecting. */
  drained(): void;
  /** Resolves when everything accepted has been settled. */
  settled(): Promise<void>;
}

export interface QueueConsumerOptions<T> {
  queue: QueueRef;
  /** Commands (BullMQ's stalled check and lock extension). */
  connection: Redis;
  logger: Logger;
  /** WORKER_LOCK_MS: how long a claim lasts without renewal. */
  lockMs: number;
  /** WORKER_MAX_RUN_MS: how long the event loop may be blocked (a model run) before held locks are let lapse. @default DEFAULT_MAX_RUN_MS */
  maxRunMs?: number;
  /** Stalls (its worker died or hung) after which a job is failed instead of run again. @default 2 */
  maxStalledCount?: number;
  /** How long a blocking fetch through BullMQ waits before looking again (its drainDelay); a source whose `close()` does not interrupt the wait makes `close()` wait up to this long. @default 1 (second) */
  blockSeconds?: number;
  source: (bull: Worker) => ConsumerSource<T>;
  sink: ConsumerSink<T>;
}

/**
 * The one manual-fetch consumer of a BullMQ queue, shared by interactive
 * envelopes and bulk chunks. BullMQ's Worker hands a processor one job at a
 * time; micro-batching and fair bulk work need to take work by hand, so this
 * runs the loop BullMQ would, and keeps the rest of BullMQ's contract:
 *
 * - fetch while the sink has room: blocking when it is idle or the last
 *   look found the queue empty (the next enqueue's marker ends the wait: no
 *   busy loop while a run holds the sink's room), non-blocking while a
 *   batch collects, backing off on Redis errors;
 * - hold each fetched job's lock and renew it (LockKeeper, from a thread of
 *   its own, through model runs) until the sink releases it: a worker that
 *   dies, or hangs past `maxRunMs`, loses its jobs' locks after `lockMs`;
 * - run BullMQ's stalled check, which puts such jobs back in the queue (and
 *   marks one that stalled more than `maxStalledCount` times as a deferred failure);
 * - close in order: stop fetching, let the sink settle what it holds, stop
 *   renewing, close the BullMQ worker.
 */
/** Longest a close waits for the fetch loop with Redis up: past every take's block (5 s at most). */
const LOOP_CLOSE_MS = 10_000;

export class QueueConsumer<T> {
  readonly bull: Worker;
  private readonly source: ConsumerSource<T>;
  private readonly sink: ConsumerSink<T>;
  private readonly locks: LockKeeper;
  private readonly log: Logger;
  private loop: Promise<void> | undefined;
  private stopping = false;
  private closing: Promise<void> | undefined;
  private tokenSeq = 0;

  constructor(private readonly options: QueueConsumerOptions<T>) {
    const { queue, lockMs } = options;
    this.log = options.logger;
    this.bull = new Worker(queue.name, null, {
      connection: options.connection,
      prefix: queue.prefix,
      autorun: false,
      lockDuration: lockMs,
      stalledInterval: Math.max(1000, Math.floor(lockMs / 2)),
      maxStalledCount: options.maxStalledCount ?? 2,
      drainDelay: options.blockSeconds ?? 1,
    });
    this.bull.on('error', (err) => this.log.warn({ err: err.message }, 'bullmq worker error'));
    this.bull.on('stalled', (jobId) => this.log.warn({ jobId }, 'job stalled (its worker died or hung); put back in the queue'));
    this.locks = new LockKeeper(
      {
        stalledKey: this.bull.keys.stalled!,
        activeKey: this.bull.keys.active!,
        baseKey: this.bull.toKey(''),
        lockMs,
        maxRunMs: options.maxRunMs ?? DEFAULT_MAX_RUN_MS,
        connection: options.connection,
      },
      this.log,
    );
    this.source = options.source(this.bull);
    this.sink = options.sink;
  }

  start(): void {
    if (this.loop) return;
    void this.bull.startStalledCheckTimer();
    this.loop = this.fetchLoop().catch((err: unknown) => this.log.error({ err }, 'fetch loop crashed'));
  }

  /** The sink is done with a job (finished, failed or handed back): stop renewing its lock. */
  release(jobId: string): void {
    this.locks.release(jobId);
  }

  get stopped(): boolean {
    return this.stopping;
  }

  /** Stop fetching, let the sink settle what it holds, then let go of Redis. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.stopping = true;
      const steps: Array<() => unknown> = [
        () => this.source.close?.(),
        // While Redis is away, a take in flight waits on a connection that queues commands offline, and
        // ioredis leaves those pending for good once it stops reconnecting: give the loop a second, no more.
        // With Redis up, a take ends within its block; one still pending past LOOP_CLOSE_MS is stuck for good
        // (a blocking connection disconnected between two reconnect attempts never flushes what it queued).
        async () => awaitAtMost(this.loop ?? Promise.resolve(), this.options.connection.status === 'ready' ? LOOP_CLOSE_MS : 1000),
        () => this.sink.settled(),
        async () => this.locks.stop(),
        // Always forced: all BullMQ's graceful close adds is waiting for its own fetch loop, which never runs here
        // (the loop above has stopped), and a QUIT on its blocking connection, where forced drops that connection.
        // A QUIT waits for Redis while it is away, and for good on a connection ioredis has given up reconnecting.
        // The shared command connection is the caller's: BullMQ leaves it open either way.
        () => this.bull.close(true),
      ];
      await closeInOrder(steps, (err) => this.log.warn({ err: (err as Error).message }, 'close step failed'));
    })();
    return this.closing;
  }

  private async fetchLoop(): Promise<void> {
    let failures = 0;
    // Whether the last look found the queue empty: then the next one blocks on the queue's marker instead of
    // asking again at once (a bulk worker looking ahead while its chunk ran once asked in a loop for the run's length).
    let empty = true;
    while (!this.stopping) {
      if (this.sink.room() <= 0) await this.sink.whenRoom();
      if (this.stopping) break;
      const token = `${this.bull.id}:${this.tokenSeq++}`;
      let fetched: { items: T[]; drained: boolean };
      this.locks.taking(token);
      try {
        fetched = await this.source.fetch(token, Math.max(1, this.sink.room()), empty || this.sink.idle());
        failures = 0;
      } catch (err) {
        this.locks.taken(token);
        if (this.stopping) break;
        empty = true;
        this.sink.drained();
        // Redis is away or failing: look again soon, then less and less often.
        const pause = Math.min(5000, 100 * 2 ** failures++);
        this.log.warn({ err: (err as Error).message, retryInMs: pause }, 'fetch failed; retrying');
        await new Promise((r) => setTimeout(r, pause));
        continue;
      }
      empty = fetched.drained;
      for (const item of fetched.items) this.locks.hold(this.source.jobId(item), token);
      this.locks.taken(token);
      if (fetched.items.length > 0) this.sink.accept(fetched.items, token, fetched.drained);
      else if (fetched.drained) this.sink.drained();
    }
  }
}
