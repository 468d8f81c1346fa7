import { setMaxListeners } from 'node:events';
import { DelayedError, Worker, type Job, type Telemetry } from 'bullmq';
import type { Redis } from 'ioredis';
import { WebhookDeliveryPayload, webhookQueue, platformNow } from '@infer/contract';
import { blockingConnectionDown } from '@infer/lifecycle';
import { DEFAULT_MAX_RUN_MS, LockKeeper } from '@infer/locks';
import type { Logger } from '@infer/logger';
import { deliver, DELIVERY_TIMEOUT_MS, type AttemptOutcome } from './delivery.js';
import { DeliveryLog, type DeliveryState, type WebhookAttempt } from './delivery-log.js';
import type { Resolver } from './dns-guard.js';
import { LOG_MARGIN_MS } from './events.js';
import { WebhookSecrets } from './secrets.js';
import { signWebhook } from './signing.js';

export interface WebhookDeliveryWorkerOptions {
  /** BullMQ duplicates it for its blocking fetches; commands share it. Needs `maxRetriesPerRequest: null`. */
  connection: Redis;
  prefix: string;
  logger: Logger;
  /** WEBHOOK_RETRY_DELAYS_MS. */
  retryDelaysMs: readonly number[];
  /** RESULT_TTL: how long the delivery log outlives its last attempt. */
  resultTtlMs: number;
  /** WEBHOOK_ALLOW_PRIVATE. */
  allowPrivate: boolean;
  /**
   * Attempts in flight at once. Each hanging receiver holds up to
   * `perReceiver` of them for up to `timeoutMs`, so it takes
   * `concurrency / perReceiver` dead receivers to delay everyone else's
   * deliveries; they cost a socket each, not a thread.
   * @default 200
   */
  concurrency?: number;
  /**
   * Attempts in flight at once to one receiver (a URL's scheme, host and
   * port); its events past that wait their turn, without using up an
   * attempt, so one dead receiver with a burst of events cannot take every
   * slot. @default a tenth of `concurrency` (20)
   */
  perReceiver?: number;
  /** @default 10_000 */
  timeoutMs?: number;
  /**
   * WORKER_LOCK_MS: how long a run's claim lasts without renewal (renewed while it runs), and how often
   * runs whose worker died are looked for, so one killed mid-attempt runs again within about twice this.
   * @default 30_000
   */
  lockMs?: number;
  /**
   * WORKER_MAX_RUN_MS: the claims of attempts in flight are kept through a model run that holds the
   * process's event loop (a run longer than the lock would otherwise let another worker deliver the
   * event again), up to this long. @default DEFAULT_MAX_RUN_MS
   */
  maxRunMs?: number;
  /** How webhook host names resolve; tests inject one. @default dns.lookup */
  resolve?: Resolver;
  /** The longest `Retry-After` obeyed, so a receiver cannot park an event forever. @default 24 h */
  maxRetryAfterMs?: number;
  now?: () => number;
  /**
   * Told each attempt's outcome and latency, for metrics: `succeeded`,
   * `retrying` (failed, another attempt scheduled) or `failed` (for good).
   */
  onAttempt?: (outcome: 'succeeded' | 'retrying' | 'failed', durationMs: number) => void;
  /** Present only when tracing: BullMQ's `process` span per delivery run, a child of its event's trace. */
  telemetry?: Telemetry | undefined;
}

/** Thrown by the processor to have BullMQ run the job again after `delayMs` (see `backoffStrategy`). */
class RetryLater extends Error {
  constructor(readonly delayMs: number) {
    super(`delivery attempt failed; next attempt in ${delayMs} ms`);
    this.name = 'RetryLater';
  }
}

/**
 * Delivers webhook events from the `webhooks` queue, on its own BullMQ
 * worker with many attempts in flight, so a slow or dead receiver delays
 * nothing but its own events and never a model's queue.
 *
 * One queue job is one event's delivery run. Each attempt signs the stored
 * body afresh (same `webhook-id`, the attempt's own timestamp), posts it,
 * and writes the attempt to the log. Then:
 * - 2xx: `succeeded`; done.
 * - 410, a refused address, an unusable URL, or the last scheduled attempt,
 *   or a resend's single attempt: `failed`; done (resendable by the API).
 * - anything else: still `pending`; the processor throws `RetryLater` and
 *   BullMQ runs the job again after the schedule's next delay, or after the
 *   receiver's `Retry-After` (429/503) when that is longer.
 * - cut short by this worker's shutdown (a scheduled attempt or a resend):
 *   still `pending`; the job goes back to the queue for a second without
 *   using up one of its attempts.
 * - a run whose last try threw (not the receiver's answer: Redis failed
 *   while recording it): `failed`, so it can be resent.
 * An event whose receiver already has `perReceiver` attempts in flight here
 * makes none: it goes back to the queue for a second or so, likewise.
 */
/** How many times a delivery run may lose its worker (killed mid-attempt) and still be run again. */
const MAX_STALLED_RUNS = 20;

/** How soon an attempt cut short by a worker's shutdown runs again (on whichever worker takes it). */
const INTERRUPTED_RETRY_MS = 1000;

/** How long an event whose receiver has all its slots waits before it is looked at again (plus up to half as much, at random, so a burst does not come back in step). */
const RECEIVER_BUSY_DELAY_MS = 1000;

/** A delivery's receiver, as `perReceiver` counts them: the URL's origin (an unusable URL is its own, and fails at once). */
function receiverOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
}

export class WebhookDeliveryWorker {
  private readonly worker: Worker;
  /** Renews the claims of the runs in flight from the process's lock-renewal thread (BullMQ's own renewal runs on the event loop). */
  private readonly claims: LockKeeper;
  private readonly log: DeliveryLog;
  private readonly secrets: WebhookSecrets;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly shutdown = new AbortController();
  private closing: Promise<void> | undefined;
  private readonly perReceiver: number;
  /** Attempts in flight here, by receiver (receiverOf). */
  private readonly inFlight = new Map<string, number>();

  constructor(private readonly options: WebhookDeliveryWorkerOptions) {
    this.logger = options.logger.child({ component: 'webhooks' });
    this.log = new DeliveryLog(options.connection, options.prefix);
    this.secrets = new WebhookSecrets(options.connection, options.prefix);
    this.now = options.now ?? platformNow;
    // Every attempt in flight listens on the shutdown signal: as many listeners as the concurrency, by design.
    setMaxListeners(0, this.shutdown.signal);
    const delays = options.retryDelaysMs;
    const concurrency = options.concurrency ?? 200;
    this.perReceiver = Math.max(1, options.perReceiver ?? Math.floor(concurrency / 10));
    const queue = webhookQueue(options.prefix);
    this.worker = new Worker(queue.name, (job, token) => this.process(job, token), {
      connection: options.connection,
      prefix: queue.prefix,
      concurrency,
      // A run whose worker died is run again (its lock lapsed): at least once, however many deploys or crashes
      // it meets. BullMQ's default (1) would fail it for good at the second, and leave its event `pending`.
      maxStalledCount: MAX_STALLED_RUNS,
      lockDuration: options.lockMs ?? 30_000,
      stalledInterval: options.lockMs ?? 30_000,
      // The claims are renewed by the process's lock-renewal thread (this.claims), through model runs too:
      // BullMQ's own renewal, on the event loop, would only do the same work twice.
      skipLockRenewal: true,
      ...(options.telemetry ? { telemetry: options.telemetry } : {}),
      settings: {
        // RetryLater carries the delay the processor chose; any other error
        // (Redis went away while recording) falls back on the schedule.
        backoffStrategy: (attemptsMade, _type, err) =>
          err instanceof RetryLater ? err.delayMs : (delays[Math.min(attemptsMade - 1, delays.length - 1)] ?? 1000),
      },
    });
    this.claims = new LockKeeper(
      {
        stalledKey: this.worker.keys.stalled!,
        activeKey: this.worker.keys.active!,
        baseKey: this.worker.toKey(''),
        lockMs: options.lockMs ?? 30_000,
        maxRunMs: options.maxRunMs ?? DEFAULT_MAX_RUN_MS,
        connection: options.connection,
      },
      this.logger,
    );
    // BullMQ takes the next delivery itself, in the call that ends a run: Redis may lock it while a model run
    // blocks the event loop, before process() has seen it. Every take of this worker counts as in flight.
    this.claims.takingAll(`${this.worker.id}:`);
    this.worker.on('error', (err) => this.logger.warn({ err: err.message }, 'webhook worker error'));
    this.worker.on('failed', (job, err) => {
      if (err instanceof RetryLater) return;
      this.logger.warn({ jobId: job?.id, err: err.message }, 'webhook delivery run failed');
      if (job) void this.endIfFailedForGood(job, err);
    });
  }

  /** Stop taking deliveries, cut the attempts in flight short (they are logged, and run again without using up an attempt), close. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // Close first so nothing new is fetched, then cut short what is in flight (close waits for it). While
      // Redis is away, what is in flight cannot record its end and a graceful close would wait for Redis to
      // come back: force it then (the runs' locks lapse, and the stalled check runs them again). Likewise
      // while the connection BullMQ blocks on is between two reconnect attempts (Redis just came back and
      // it has not yet, or Redis dropped it): the graceful close waits for that connection's 'end', which
      // one with no socket never emits (taskforcesh/bullmq#4656), and would never end.
      const force = this.options.connection.status !== 'ready' || (await blockingConnectionDown(this.worker));
      const closed = this.worker.close(force);
      this.shutdown.abort();
      await closed;
      this.claims.stop();
    })();
    return this.closing;
  }

  private async process(job: Job, token: string | undefined): Promise<void> {
    const id = job.id;
    if (id && token) this.claims.hold(id, token);
    try {
      await this.run(job, token);
    } finally {
      if (id) this.claims.release(id);
    }
  }

  private async run(job: Job, token: string | undefined): Promise<void> {
    const parsed = WebhookDeliveryPayload.safeParse(job.data);
    if (!parsed.success) {
      this.logger.error({ jobId: job.id }, 'malformed webhook delivery payload; dropped');
      return;
    }
    const { eventId, trigger, resend } = parsed.data;
    const event = await this.log.get(eventId);
    if (!event) {
      this.logger.info({ eventId }, 'webhook event expired before delivery; dropped');
      return;
    }
    // A run acts only while the event is its own. An event queued twice (re-ensured after a crash) is
    // delivered once: a run finds it done and stops. A scheduled run's ends with its schedule: once a resend
    // was accepted (the delivery had ended), a scheduled run taken back after its worker died must not
    // attempt beside it, nor start a schedule anew. A resend's run, while the event is pending by that
    // resend: taken back after its attempt was recorded, it does not send it again.
    if (trigger === 'scheduled' && (event.state !== 'pending' || event.resendToken !== null)) return;
    if (trigger === 'manual' && (event.state !== 'pending' || (resend !== undefined && event.resendToken !== resend))) return;
    const { options } = this;
    const receiver = receiverOf(event.url);
    const busy = this.inFlight.get(receiver) ?? 0;
    if (busy >= this.perReceiver) {
      // Its receiver already has its share of this worker's slots (it hangs, say, under a burst of its
      // events): wait a turn, no attempt made, so other receivers' events are not stuck behind it.
      await job.moveToDelayed(Date.now() + RECEIVER_BUSY_DELAY_MS * (1 + Math.random() / 2), token);
      throw new DelayedError();
    }
    this.inFlight.set(receiver, busy + 1);
    const at = this.now();
    let headers: Record<string, string>;
    try {
      // Signing throws on a secret that is not one (altered in Redis by hand): the slot goes back either way.
      headers = { ...signWebhook(await this.secrets.get(event.tenant), event.id, new Date(at), event.body) };
    } catch (err) {
      this.release(receiver);
      throw err;
    }
    const outcome = await deliver(
      { url: event.url, headers, body: event.body },
      {
        allowPrivate: options.allowPrivate,
        timeoutMs: options.timeoutMs ?? DELIVERY_TIMEOUT_MS,
        signal: this.shutdown.signal,
        ...(options.resolve ? { resolve: options.resolve } : {}),
      },
    ).finally(() => this.release(receiver));

    const delays = options.retryDelaysMs;
    // attemptsMade counts this job's earlier failed runs, so it indexes the delay before the next one.
    const retryIndex = job.attemptsMade;
    if (outcome.interrupted) {
      // Cut short by this worker's shutdown (a deploy): not the receiver's answer, so not one of the
      // schedule's attempts, nor a resend's one attempt. Logged as it happened; the run goes back to the
      // queue as it was, for another worker (or this one, restarted), even when it was the last attempt.
      const retryAt = this.now() + INTERRUPTED_RETRY_MS;
      options.onAttempt?.('retrying', outcome.durationMs);
      const horizon = INTERRUPTED_RETRY_MS + (trigger === 'scheduled' ? delays.slice(retryIndex).reduce((a, b) => a + b, 0) : 0);
      await this.log.recordAttempt(event, toAttempt(event.attemptCount + 1, at, outcome, trigger), { state: 'pending', nextAttemptAt: retryAt }, Math.max(options.resultTtlMs, horizon + LOG_MARGIN_MS));
      await job.moveToDelayed(Date.now() + INTERRUPTED_RETRY_MS, token);
      throw new DelayedError();
    }
    const canRetry = trigger === 'scheduled' && !outcome.ok && !outcome.final && retryIndex + 1 < (job.opts.attempts ?? 1);
    let delayMs = 0;
    if (canRetry) {
      delayMs = delays[Math.min(retryIndex, delays.length - 1)] ?? 0;
      if (outcome.retryAfterMs !== null) delayMs = Math.max(delayMs, Math.min(outcome.retryAfterMs, options.maxRetryAfterMs ?? 24 * 3600_000));
    }
    const state: DeliveryState = outcome.ok ? 'succeeded' : canRetry ? 'pending' : 'failed';
    const attempt = toAttempt(event.attemptCount + 1, at, outcome, trigger);
    options.onAttempt?.(state === 'pending' ? 'retrying' : state, outcome.durationMs);
    // While retries are scheduled the log outlives them; once the delivery has ended it lives RESULT_TTL, as its job does.
    const horizon = canRetry ? delayMs + delays.slice(retryIndex + 1).reduce((a, b) => a + b, 0) : 0;
    await this.log.recordAttempt(
      event,
      attempt,
      { state, nextAttemptAt: canRetry ? at + outcome.durationMs + delayMs : null },
      canRetry ? Math.max(options.resultTtlMs, horizon + LOG_MARGIN_MS) : options.resultTtlMs,
    );
    const log = this.logger.child({ eventId, type: event.type, attempt: attempt.attempt });
    if (state === 'succeeded') log.debug({ status: outcome.statusCode }, 'webhook delivered');
    // At info, not warn: a receiver that keeps refusing is its tenant's affair (seen in the delivery log and the
    // deliveries metric), and a tenant must not be able to fill an operator's warnings with its own endpoint's outage.
    else if (state === 'failed') log.info({ status: outcome.statusCode, err: outcome.error }, 'webhook delivery failed for good');
    if (canRetry) throw new RetryLater(delayMs);
  }

  /**
   * A run that nothing will run again must not leave its event `pending`,
   * which would also refuse its resend: its last attempt threw (Redis failed
   * while recording, say), or it lost its worker more than MAX_STALLED_RUNS
   * times, which BullMQ fails for good whatever attempts are left (its
   * `attemptsMade` is low then: its state tells).
   */
  private async endIfFailedForGood(job: Job, err: Error): Promise<void> {
    const forGood = job.attemptsMade >= (job.opts.attempts ?? 1) || (await job.getState().catch(() => undefined)) === 'failed';
    if (forGood) await this.endRunLost(job, err);
  }

  private async endRunLost(job: Job, err: Error): Promise<void> {
    const parsed = WebhookDeliveryPayload.safeParse(job.data);
    if (!parsed.success) return;
    try {
      if (await this.log.failIfPending(parsed.data.eventId, this.options.resultTtlMs)) {
        this.logger.warn({ eventId: parsed.data.eventId, err: err.message }, 'webhook delivery marked failed: its run failed for good (it can be resent)');
      }
    } catch (e) {
      this.logger.warn({ eventId: parsed.data.eventId, err: (e as Error).message }, 'could not mark a lost webhook delivery failed');
    }
  }

  private release(receiver: string): void {
    const n = (this.inFlight.get(receiver) ?? 1) - 1;
    if (n > 0) this.inFlight.set(receiver, n);
    else this.inFlight.delete(receiver);
  }
}

function toAttempt(n: number, at: number, o: AttemptOutcome, trigger: WebhookAttempt['trigger']): WebhookAttempt {
  return {
    attempt: n,
    timestamp: new Date(at).toISOString(),
    status_code: o.statusCode,
    error: o.error,
    duration_ms: o.durationMs,
    state: o.ok ? 'succeeded' : 'failed',
    trigger,
  };
}
