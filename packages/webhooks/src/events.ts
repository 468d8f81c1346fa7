import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue, type JobsOptions, type Telemetry } from 'bullmq';
import type { Redis } from 'ioredis';
import { QUEUE_EVENTS_MAX_LEN, webhookQueue, type WebhookDeliveryPayload, platformNow } from '@infer/contract';
import { silentLogger, type Logger } from '@infer/logger';
import { DeliveryLog, type StoredEvent, type WebhookDelivery, type WebhookEventType, type WebhookSubject } from './delivery-log.js';

/**
 * An event to send: `data` is the Job or Batch as the API renders it, and
 * also names what the event is about; or, where the producer has it printed
 * already (a job's, from its record), what it is about and its JSON text,
 * which goes into the body as it is: a job with a large output is then not
 * printed, parsed and printed again.
 */
export interface NewWebhookEvent {
  tenant: string;
  url: string;
  type: WebhookEventType;
  data: WebhookSubject | PrintedSubject;
  /** The W3C traceparent of what the event is about (a traced job): its delivery joins that trace. */
  traceparent?: string;
}

/** BullMQ's telemetry (the platform's: @infer/tracing's BullmqTelemetry), and a way to run an add under a traceparent. */
export interface TracedTelemetry extends Telemetry {
  inTrace<T>(traceparent: string | undefined, fn: () => T): T;
}

export interface WebhookEventsOptions {
  /** A command connection (BullMQ's producer and the log share it). */
  connection: Redis;
  prefix: string;
  /** How long an event's log outlives its last write (RESULT_TTL). */
  resultTtlMs: number;
  /** WEBHOOK_RETRY_DELAYS_MS: a delivery gets `length + 1` scheduled attempts. */
  retryDelaysMs: readonly number[];
  logger?: Logger;
  now?: () => number;
  /** Present only when tracing: BullMQ's add spans, and the trace context stored with each delivery job. */
  telemetry?: TracedTelemetry | undefined;
}

/** What an event is about, with its JSON text as the API prints it. */
export interface PrintedSubject extends WebhookSubject {
  json: string;
}

const isPrinted = (data: WebhookSubject | PrintedSubject): data is PrintedSubject => typeof (data as Partial<PrintedSubject>).json === 'string';

/** Margin kept on a log's TTL beyond its last scheduled attempt, so the record outlives its own retries. */
export const LOG_MARGIN_MS = 10 * 60_000;

/**
 * Where webhook events come from, for every producer (the worker as jobs
 * start and end, the gateway as jobs are canceled, the batch runner as a
 * batch completes). An event is recorded in the delivery log and queued on
 * the `webhooks` BullMQ queue; the delivery worker does the rest, so no
 * producer ever waits on a receiver.
 *
 * Every event has an id derived from what it is about (`eventIdFor`), and
 * is created with `ensure` (or `ensureMany`): a producer that dies and is
 * followed by another (a worker's envelope taken again after a stall, an
 * outbox drained twice) creates and queues it once. For a batch:
 * ```ts
 * await webhookEvents.ensure(eventIdFor('batch.completed', batch.id), { tenant, url: batch.webhook, type: 'batch.completed', data: batch });
 * ```
 * where `batch` is the public Batch (`object: 'batch'`, `id`); its deliveries
 * are then listed by `DeliveryLog.list({ object: 'batch', id }, tenant)`.
 */
export class WebhookEvents {
  readonly log: DeliveryLog;
  private queueInstance: Queue | undefined;
  private readonly now: () => number;
  private readonly logger: Logger;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: WebhookEventsOptions) {
    this.log = new DeliveryLog(options.connection, options.prefix);
    this.now = options.now ?? platformNow;
    this.logger = options.logger ?? silentLogger;
  }

  /** Created on first use: a process that never sends an event opens nothing. */
  private get queue(): Queue {
    if (!this.queueInstance) {
      const ref = webhookQueue(this.options.prefix);
      this.queueInstance = new Queue(ref.name, {
        connection: this.options.connection,
        prefix: ref.prefix,
        streams: { events: { maxLen: QUEUE_EVENTS_MAX_LEN } },
        ...(this.options.telemetry ? { telemetry: this.options.telemetry } : {}),
      });
      this.queueInstance.on('error', (err) => this.logger.warn({ err: err.message }, 'webhook queue error'));
    }
    return this.queueInstance;
  }

  /**
   * `ensure` for many events at once (a taken envelope's `job.started`s):
   * one pipeline creates those that do not exist, then one bulk add queues
   * the deliveries of those still pending (BullMQ keeps one job per id, so
   * an event queued before is not queued twice). Each delivery joins its
   * event's trace. Throws when Redis does.
   */
  async ensureMany(events: ReadonlyArray<{ id: string; event: NewWebhookEvent }>): Promise<void> {
    if (events.length === 0) return;
    const createdAt = this.now();
    const stored = events.map(({ id, event }) => this.stored(id, event, createdAt));
    const states = await this.log.createManyIfAbsent(stored, this.logTtlMs());
    const due = events.filter((_, i) => states[i] === 'created' || states[i] === 'pending');
    if (due.length === 0) return;
    await this.queue.addBulk(
      due.map(({ id, event }) => ({
        name: event.type,
        data: { eventId: id, trigger: 'scheduled' } satisfies WebhookDeliveryPayload,
        // addBulk keeps a job's own trace context: each delivery joins its job's trace.
        opts: { ...this.jobOptions(id, this.options.retryDelaysMs.length + 1), ...(event.traceparent && this.options.telemetry ? { telemetry: { metadata: event.traceparent } } : {}) },
      })),
    );
  }

  /**
   * `ensureMany` for a producer that will not come again (a job's take,
   * unless its worker dies): tried again after 0.25 s and 1 s while Redis
   * errs. When it still errs, events it may have created without queuing
   * their delivery are ended `failed`, so they can be resent rather than
   * stay pending with nothing to deliver them; not those whose delivery
   * an earlier producer queued (its run, waiting or with a retry scheduled,
   * delivers them). Throws the last error.
   */
  async ensureManyOrFail(events: ReadonlyArray<{ id: string; event: NewWebhookEvent }>): Promise<void> {
    let last: unknown;
    for (const backoffMs of [0, 250, 1000]) {
      if (backoffMs > 0) await sleep(backoffMs);
      try {
        return await this.ensureMany(events);
      } catch (err) {
        last = err;
      }
    }
    await Promise.allSettled(
      events.map(async ({ id }) => {
        const run = await this.queue.getJobState(id);
        if (run !== 'unknown' && run !== 'completed' && run !== 'failed') return;
        await this.log.failIfPending(id, this.logTtlMs(), { unlessOwned: true });
      }),
    );
    throw last;
  }

  /**
   * Deliver an event that has one id for good (a job's `job.completed`),
   * however many times this is called, crashes between included: the event
   * is created unless it exists, and its delivery queued while it is
   * pending (BullMQ keeps one job per id; one that has been delivered is not
   * pending any more). Throws when Redis does; the caller tries again.
   */
  async ensure(id: string, event: NewWebhookEvent): Promise<void> {
    const [state] = await this.log.createManyIfAbsent([this.stored(id, event, this.now())], this.logTtlMs());
    if (state !== 'created' && state !== 'pending') return;
    const add = () => this.queue.add(event.type, { eventId: id, trigger: 'scheduled' } satisfies WebhookDeliveryPayload, this.jobOptions(id, this.options.retryDelaysMs.length + 1));
    // BullMQ's add span is made under the active context: the job's, when it was traced.
    const telemetry = this.options.telemetry;
    await (telemetry && event.traceparent ? telemetry.inTrace(event.traceparent, add) : add());
  }

  /**
   * Send an event again, once, now (a `manual` attempt with the same
   * `webhook-id`). Only a delivery that has ended (failed or succeeded) can
   * be resent; a pending one is still being tried.
   */
  async resend(tenant: string, eventId: string): Promise<WebhookDelivery | 'missing' | 'pending'> {
    // One token for the mark and the run's id: either, sent again after a lost reply, is this resend still.
    const token = randomUUID();
    const marked = await this.log.markResend(eventId, tenant, this.now(), token, this.logTtlMs());
    if (marked === 'missing' || marked === 'pending') return marked;
    try {
      await this.queue.add('resend', { eventId, trigger: 'manual', resend: token } satisfies WebhookDeliveryPayload, this.jobOptions(`${eventId}-resend-${token}`, 1));
    } catch (err) {
      await this.log.unmarkResend(eventId, token, marked.was).catch(() => undefined);
      throw err;
    }
    return (await this.log.delivery(eventId, tenant)) ?? 'missing';
  }

  private stored(id: string, event: NewWebhookEvent, createdAt: number): StoredEvent {
    return {
      id,
      tenant: event.tenant,
      type: event.type,
      url: event.url,
      subject: { object: event.data.object, id: event.data.id },
      body: isPrinted(event.data)
        ? `{"type":${JSON.stringify(event.type)},"timestamp":"${new Date(createdAt).toISOString()}","data":${event.data.json}}`
        : JSON.stringify({ type: event.type, timestamp: new Date(createdAt).toISOString(), data: event.data }),
      createdAt,
      state: 'pending',
      attemptCount: 0,
      nextAttemptAt: createdAt,
      resendToken: null,
    };
  }

  /** The log's TTL at creation: RESULT_TTL, or longer when the whole retry schedule is longer. */
  private logTtlMs(): number {
    const schedule = this.options.retryDelaysMs.reduce((a, b) => a + b, 0);
    return Math.max(this.options.resultTtlMs, schedule + LOG_MARGIN_MS);
  }

  private jobOptions(jobId: string, attempts: number): JobsOptions {
    return {
      jobId,
      attempts,
      backoff: { type: 'webhook' },
      removeOnComplete: true,
      removeOnFail: { age: 24 * 3600, count: 10_000 },
    };
  }

  /** Idempotent; the connection is the caller's and stays open. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.queueInstance?.close();
    })();
    return this.closing;
  }
}

