import { SpanKind, SpanStatusCode, type Context } from '@opentelemetry/api';
import type { Tracing } from '@infer/tracing';
import { newJobId, queueTag, type CreateJobBody, type EnvelopeJob, platformNow } from '@infer/contract';
import { AppError, conflict, invalidInput, notFound } from '@infer/errors';
import { decodeRecord, encodeRecord, hasCompletedHook, idempotencyDigest, recordTenant, endedJobJson, renderPendingJob, type CompletedEventsOutbox, type IdempotencyClaim, type JobLookup, type JobStore, type JobWaiters, type JsonPieces } from '@infer/job-store';
import type { ModelVersion } from '@infer/models';
import type { ModelResolver } from '../models/model-catalog.js';
import { decodeInput, sharedDimMismatch, type DecodedTensor } from '@infer/tensors';
import { assertWebhookUrlAllowed } from '@infer/webhooks';
import { assertMetadataFits } from '../http/metadata.js';
import type { EnvelopeWriter } from './envelope-writer.js';
import { assertServed, type ServingCheck } from './served.js';

export interface JobServiceDeps {
  /** Chooses the version a job goes to (pinned, or by the routing). */
  models: ModelResolver;
  store: JobStore;
  waiters: JobWaiters;
  writer: EnvelopeWriter;
  /** Which model versions live workers serve; absent, every version is queued. */
  fleet?: ServingCheck;
  webhookAllowPrivate: boolean;
  /** RESULT_TTL_SECONDS in ms: how long an ended job's record stays (an Idempotency-Key outliving it is taken over). @default 24 h */
  resultTtlMs?: number;
  /** Sends a canceled job's `job.completed` (the cancel put it on its queue's outbox). */
  outbox?: Pick<CompletedEventsOutbox, 'drain'>;
  /** Told of every job this gateway writes to a queue, as its write returns (a `Prefer: wait` request goes on waiting): the metrics count them. */
  onSubmitted?: (model: string, version: string) => void;
  /** Told of every cancel this gateway commits, by a client or at a read past the job's deadline (the metrics count them). */
  onCanceled?: (model: string, version: string) => void;
  /** Told of every job this gateway ends `deadline_exceeded`, with how long it waited (a rollout counts it as failed). */
  onDeadlineExceeded?: (model: string, version: string, waitedMs: number) => void;
  now?: () => number;
  /** Off (or absent): no span, no traceparent in the envelope. */
  tracing?: Tracing;
}

/** A job as the API answers it: the Job's JSON text, printed once from what Redis holds. */
export interface RenderedJob {
  id: string;
  model: string;
  version: string;
  ended: boolean;
  /** The text; in pieces, printed as they are taken, for an ended job with large outputs (endedJobJson). */
  json: string | JsonPieces;
}

export interface SubmitResult extends RenderedJob {
  /** True when an Idempotency-Key matched an earlier submit: the job is that first job. */
  replayed: boolean;
}

export interface SubmitOptions {
  /** Hold the answer until the job ends or this many ms pass (`Prefer: wait`). */
  waitMs?: number | undefined;
  /** Registers what to do when the client goes away (drop its waiter). */
  onGone?: ((then: () => void) => void) | undefined;
  idempotencyKey?: string | undefined;
  /** `Cancel-After`: a job still queued this long after it is accepted ends canceled without running. */
  cancelAfterMs?: number | undefined;
  /** The request's trace context (its SERVER span), when tracing: the job's enqueue span is made under it. */
  trace?: Context | undefined;
}

/** How long a replay waits for the first request with its Idempotency-Key to enqueue its job. */
const REPLAY_WAIT_MS = 2000;

/** A claim this old whose job is not there has lost it (expired, or never enqueued): far beyond an enqueue's time. */
const STALE_CLAIM_MS = 60_000;

/**
 * What the job routes do, without HTTP: validate a request against the
 * model, hand it to the envelope writer, read it back, wait for it, cancel it.
 */
export class JobService {
  private readonly now: () => number;

  constructor(private readonly deps: JobServiceDeps) {
    this.now = deps.now ?? platformNow;
  }

  /** Validate everything that can be known at submit, so bad input is a 422 now and never a failed job later. */
  validate(body: CreateJobBody): { model: ModelVersion; inputs: DecodedTensor[] } {
    const model = this.deps.models.resolve(body.model, body.version === undefined ? undefined : String(body.version));
    try {
      const inputs = decodeInputs(model, body.input);
      if (body.webhook !== undefined) assertWebhookUrlAllowed(body.webhook, this.deps.webhookAllowPrivate);
      if (body.webhook_events_filter && !body.webhook) {
        throw invalidInput('webhook_events_filter is given without a webhook');
      }
      if (body.metadata) assertMetadataFits(body.metadata);
      return { model, inputs };
    } catch (err) {
      this.unroute(body, model);
      throw err;
    }
  }

  /** Give a routed request's pick back (see ModelResolver.unroute). */
  private unroute(body: CreateJobBody, model: ModelVersion): void {
    if (body.version === undefined) this.deps.models.unroute?.(model.name, model.version);
  }

  async submit(tenant: string, body: CreateJobBody, options: SubmitOptions = {}): Promise<SubmitResult> {
    const { waitMs, onGone, idempotencyKey } = options;
    const { store, waiters, writer } = this.deps;
    let validated: ReturnType<JobService['validate']>;
    try {
      validated = this.validate(body);
    } catch (err) {
      // A retry whose first request made its job gets that job, whatever became of its model since (the
      // version pinned or routed to is unloaded, the model's inputs changed): read the key on this path only.
      const claim = idempotencyKey && err instanceof AppError ? await store.idempotencyClaim(tenant, idempotencyKey).catch(() => null) : null;
      const replayed = claim ? await this.replay(tenant, claim, waitMs, onGone) : 'gone';
      if (replayed !== 'gone') return replayed;
      throw err;
    }
    const { model, inputs } = validated;
    // Written, or maybe written (a Redis error after the enqueue ran): the job counts for the routing.
    let made = false;
    try {
      const id = newJobId(queueTag(model.name, model.version));
      // One round trip finds an earlier request's job or claims the key (SET NX answers the owner's claim).
      if (idempotencyKey) {
        let claim = await store.claimIdempotencyKey(tenant, idempotencyKey, id);
        while (claim.owner !== id) {
          const replayed = await this.replay(tenant, claim, waitMs, onGone);
          if (replayed !== 'gone') return replayed;
          // The key's job is gone: its record expired (RESULT_TTL_SECONDS can be shorter than the key's
          // 24 h), or the request that claimed it died before enqueueing. This request takes the key over
          // and runs as a first one; if another took it over first, this one replays that one's job.
          if (await store.takeOverIdempotencyKey(tenant, idempotencyKey, claim, id)) break;
          claim = await store.claimIdempotencyKey(tenant, idempotencyKey, id);
        }
      }
      // After the replay: the job a replay answers is already in, whoever serves its version now.
      try {
        await assertServed(this.deps.fleet, model);
      } catch (err) {
        if (idempotencyKey) await store.releaseIdempotencyKey(tenant, idempotencyKey, id).catch(() => undefined);
        throw err;
      }
      const job: EnvelopeJob = { id, tenant, created_at: this.now() };
      if (options.cancelAfterMs !== undefined) job.deadline = job.created_at + options.cancelAfterMs;
      if (model.inputs.some((s) => s.shape.includes(-1))) job.shapes = inputs.map((t) => t.shape);
      if (waitMs) job.wait = true;
      if (idempotencyKey) job.idempotency = idempotencyDigest(idempotencyKey);
      if (body.metadata) job.metadata = body.metadata;
      if (body.webhook) {
        job.webhook = body.webhook;
        job.webhook_events_filter = [...new Set(body.webhook_events_filter ?? (['completed'] as const))];
      }
      // The enqueue span (PRODUCER): the job's wait for its envelope's write. Its traceparent goes in the
      // envelope with the job, so the worker's spans for the job are its children, in the same trace.
      const tracing = this.deps.tracing;
      const enqueue = tracing?.enabled
        ? tracing.startSpan('enqueue', { kind: SpanKind.PRODUCER, attributes: { 'infer.job.id': id, 'infer.model': model.name, 'infer.model.version': model.version } }, options.trace)
        : undefined;
      if (enqueue) job.traceparent = tracing!.traceparentOf(enqueue);
      // Register before enqueueing: a fast worker may end the job before the write returns.
      const waiter = waitMs ? waiters.register(id, waitMs) : undefined;
      try {
        await writer.add(model, job, inputs);
        made = true;
        this.deps.onSubmitted?.(model.name, model.version);
        enqueue?.end();
      } catch (err) {
        if (enqueue) {
          enqueue.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
          enqueue.end();
        }
        waiter?.cancel();
        // Only a refusal (queue full, over the tenant's cap, version unloading: AppErrors) says nothing was
        // written. A Redis error may come after the enqueue ran (a timeout, a dropped reply): the key keeps
        // its claim, so a retry replays the job if it was written (and takes the key over once the claim is stale).
        if (!(err instanceof AppError)) made = true;
        else if (idempotencyKey) await store.releaseIdempotencyKey(tenant, idempotencyKey, id).catch(() => undefined);
        throw err;
      }
      const base = { id, model: model.name, version: model.version, replayed: false };
      if (waiter) {
        onGone?.(waiter.cancel);
        const stopWatch = this.watchDeadline(id, job.deadline, waitMs!);
        const record = await waiter.promise.finally(stopWatch);
        if (record) return { ...base, ended: true, json: endedJobJson(id, record) };
        try {
          return { ...(await this.get(tenant, id)), replayed: false };
        } catch (err) {
          // The job is stored and queued (its write answered): Redis failing the read after the wait does
          // not unmake it. A 503 would tell the client to submit it again (and it would run twice); the 202
          // gives it the job as last known here, with its id, to poll.
          if (err instanceof AppError && err.status !== 503) throw err;
          return { ...base, ended: false, json: renderPendingJob(id, model.name, model.version, job, null) };
        }
      }
      return { ...base, ended: false, json: renderPendingJob(id, model.name, model.version, job, null) };
    } finally {
      // The routing counts the jobs accepted: a routed request that made none (refused, a replay) gives its pick back.
      if (!made) this.unroute(body, model);
    }
  }

  /**
   * The job an earlier request with the same Idempotency-Key created (it may still be on its way into the
   * queue), or 'gone' when the claim is older than a request takes to enqueue and its job is not there.
   */
  private async replay(tenant: string, claim: IdempotencyClaim, waitMs?: number, onGone?: SubmitOptions['onGone']): Promise<SubmitResult | 'gone'> {
    const deadline = performance.now() + REPLAY_WAIT_MS;
    // A request enqueues its job within seconds of claiming the key; a job is gone once its record expires.
    const staleAfterMs = Math.max(REPLAY_WAIT_MS, Math.min(STALE_CLAIM_MS, this.deps.resultTtlMs ?? STALE_CLAIM_MS));
    for (let pause = 10; ; pause = Math.min(200, pause * 2)) {
      try {
        return { ...(await this.get(tenant, claim.owner, waitMs, onGone)), replayed: true };
      } catch (err) {
        const notFound = err instanceof AppError && err.code === 'job_not_found';
        if (notFound && claim.claimedAt !== null && this.now() - claim.claimedAt > staleAfterMs) return 'gone';
        if (!notFound || performance.now() > deadline) {
          throw err instanceof AppError && err.code === 'job_not_found'
            ? conflict('A request with this Idempotency-Key is still being processed, or failed before its job was queued; retry')
            : err;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  /** The tenant's job; another tenant's id is a 404 exactly like an unknown one. */
  async get(tenant: string, id: string, waitMs?: number, onGone?: SubmitOptions['onGone']): Promise<RenderedJob> {
    const { store, waiters } = this.deps;
    if (!waitMs) return this.render(tenant, id, await this.pastDeadline(tenant, await store.read(id)));
    // Registered here and on the envelope (in the same step as the read) before anything can end it.
    const waiter = waiters.register(id, waitMs);
    let lookup: JobLookup;
    try {
      lookup = await this.pastDeadline(tenant, await store.read(id, waiters.channel));
    } catch (err) {
      waiter.cancel();
      throw err;
    }
    if (lookup.kind !== 'pending' || lookup.job.tenant !== tenant) {
      waiter.cancel();
      return this.render(tenant, id, lookup);
    }
    onGone?.(waiter.cancel);
    const stopWatch = this.watchDeadline(id, lookup.startedAt === null ? lookup.job.deadline : undefined, waitMs);
    const record = await waiter.promise.finally(stopWatch);
    if (record) return this.render(tenant, id, { kind: 'ended', record });
    return this.render(tenant, id, await this.pastDeadline(tenant, await store.read(id)));
  }

  /**
   * A job read still queued past its Cancel-After deadline ends here and now (`deadline_exceeded`), as
   * the workers' sweep would within a second: there may be no worker at all to sweep (the fleet is down,
   * its jobs waiting for it), and the job must not read `queued` past its deadline. Nor `running`, when a
   * worker took its envelope only after the deadline: that worker does not run it (it ends it so too,
   * once the envelope's other jobs have run). A worker that took it in time wins (the cancel commits only
   * while it is queued, or was at its deadline): then it is read again, running.
   */
  private async pastDeadline(tenant: string, lookup: JobLookup): Promise<JobLookup> {
    if (lookup.kind !== 'pending' || lookup.job.tenant !== tenant) return lookup;
    const now = this.now();
    const outcome = await this.deps.store.expirePastDeadline(lookup, now);
    if (outcome === null) return lookup;
    if (outcome.canceled) {
      this.deps.onDeadlineExceeded?.(lookup.model, lookup.version, now - lookup.job.created_at);
      await this.afterCancel(lookup);
      return { kind: 'ended', record: outcome.record };
    }
    if ('record' in outcome) return { kind: 'ended', record: outcome.record };
    return this.deps.store.read(lookup.job.id);
  }

  /**
   * End a job still queued past its deadline, whoever's it is (the gateways' sweep of a queue no worker
   * serves, deadline-sweep.ts). True when the job has ended, here or elsewhere; false when it is running
   * (taken in time), not due, or gone.
   */
  async expireQueued(id: string): Promise<boolean> {
    const lookup = await this.deps.store.read(id);
    if (lookup.kind !== 'pending') return lookup.kind === 'ended';
    return (await this.pastDeadline(lookup.job.tenant, lookup)).kind === 'ended';
  }

  /**
   * While a request waits on a queued job whose deadline falls within the wait: at the deadline, read it
   * and end it if it is still queued (pastDeadline), which tells the waiting request as any end does.
   * Answers what stops the watch.
   */
  private watchDeadline(id: string, deadline: number | undefined, waitMs: number): () => void {
    if (deadline === undefined) return () => undefined;
    const inMs = deadline - this.now();
    if (inMs > waitMs) return () => undefined;
    const timer = setTimeout(() => {
      void this.deps.store
        .read(id)
        .then((lookup) => (lookup.kind === 'pending' ? this.pastDeadline(lookup.job.tenant, lookup) : lookup))
        .catch(() => undefined);
    }, Math.max(0, inMs) + 1);
    timer.unref();
    return () => clearTimeout(timer);
  }

  async cancel(tenant: string, id: string): Promise<RenderedJob> {
    let lookup: JobLookup;
    let record: Buffer;
    for (let attempt = 1; ; attempt++) {
      // A job still queued past its deadline has ended (deadline_exceeded), whether or not it was read
      // since: the cancel finds it ended (409), as it would after a GET or the workers' sweep.
      lookup = await this.pastDeadline(tenant, await this.deps.store.read(id));
      // 404 for a missing or another tenant's job, before anything else is said about it.
      if (lookup.kind === 'ended') {
        const { header } = decodeRecord(lookup.record);
        if (header.t !== tenant) throw jobNotFound(id);
        throw endedConflict(header.s);
      }
      if (lookup.kind !== 'pending' || lookup.job.tenant !== tenant) throw jobNotFound(id);
      record = encodeRecord(lookup.model, lookup.version, lookup.job, {
        status: 'canceled',
        startedAt: lookup.startedAt,
        completedAt: this.now(),
        error: { code: 'canceled', message: 'The job was canceled by the client.' },
      });
      // A record written for a queued job commits only while the job is still queued: a worker that took it
      // since the read started it, and its record must say so. Then read again (it is running now) and retry.
      const outcome = await this.deps.store.cancel(lookup, record, { onlyIfQueued: lookup.startedAt === null });
      if (outcome.canceled) break;
      if ('record' in outcome) throw endedConflict(decodeRecord(outcome.record).header.s);
      if (attempt === 3) throw new Error('a cancel kept finding its job taken between its read and its commit');
    }
    await this.afterCancel(lookup);
    return { id, model: lookup.model, version: lookup.version, ended: true, json: endedJobJson(id, record) };
  }

  /**
   * A cancel committed: it is counted, a queued job leaves this gateway's view of the queue's counts,
   * and its job.completed (the cancel put it on the outbox in the same step) goes now, or with the
   * workers' next drain.
   */
  private async afterCancel(lookup: Extract<JobLookup, { kind: 'pending' }>): Promise<void> {
    this.deps.onCanceled?.(lookup.model, lookup.version);
    const version = { name: lookup.model, version: lookup.version };
    if (hasCompletedHook(lookup.job)) await this.deps.outbox?.drain(this.deps.writer.queueOf(version).keys.outbox).catch(() => undefined);
  }

  /** The tenant owning a job, or null (for routes about a job, such as its webhook deliveries). */
  async tenantOf(id: string): Promise<string | null> {
    const lookup = await this.deps.store.read(id);
    if (lookup.kind === 'ended') return recordTenant(lookup.record);
    return lookup.kind === 'pending' ? lookup.job.tenant : null;
  }

  private render(tenant: string, id: string, lookup: JobLookup): RenderedJob {
    if (lookup.kind === 'ended') {
      const decoded = decodeRecord(lookup.record);
      const { header } = decoded;
      if (header.t !== tenant) throw jobNotFound(id);
      return { id, model: header.m, version: header.v, ended: true, json: endedJobJson(id, lookup.record, decoded) };
    }
    if (lookup.kind === 'pending' && lookup.job.tenant === tenant) {
      return { id, model: lookup.model, version: lookup.version, ended: false, json: renderPendingJob(id, lookup.model, lookup.version, lookup.job, lookup.startedAt) };
    }
    throw jobNotFound(id);
  }
}

const jobNotFound = (id: string) => notFound('job_not_found', `No job with id "${id}"`);

function endedConflict(status: string): AppError {
  return conflict(`The job has already ended (${status}); only queued or running jobs can be canceled`);
}

/** Every model input present, none unknown, each one decoded and checked against its spec, in the model's input order. */
export function decodeInputs(model: ModelVersion, input: Record<string, unknown>): DecodedTensor[] {
  const known = new Set(model.inputs.map((s) => s.name));
  for (const name of Object.keys(input)) {
    if (!known.has(name)) {
      throw invalidInput(`Unknown input "${name}"; model ${model.name} takes ${[...known].map((n) => `"${n}"`).join(', ')}`);
    }
  }
  const decoded = model.inputs.map((spec) => {
    if (!(spec.name in input)) throw invalidInput(`Missing input "${spec.name}"`);
    return decodeInput(input[spec.name], spec);
  });
  const mismatch = model.sharedDims && sharedDimMismatch(model.sharedDims, model.inputs, decoded.map((t) => t.shape));
  if (mismatch) throw invalidInput(mismatch);
  return decoded;
}
