import { v4 as uuidv4 } from 'uuid';
import {
  JOB_CATALOG,
  MAX_METADATA_BYTES,
  isEnded,
  type CreateJobBody,
  type EncodedTensor,
  type InferPayload,
  type Job,
} from '@infer/contract';
import { conflict, invalidInput, notFound } from '@infer/errors';
import { hashToRecord, queuedRecord, toJob, type JobRecord, type JobStore, type JobWaiters, type NewJobRecord } from '@infer/job-store';
import type { ModelRepository, ModelVersion } from '@infer/models';
import { decodeInput, encodeTensor } from '@infer/tensors';
import { assertWebhookUrlAllowed, type WebhookEvents } from '@infer/webhooks';
import type { QueueRegistry } from './queue-registry.js';

export interface JobServiceDeps {
  models: ModelRepository;
  store: JobStore;
  waiters: JobWaiters;
  queues: QueueRegistry;
  webhookAllowPrivate: boolean;
  /** Where `job.completed` of a canceled job goes (the worker sends every other job event). */
  webhookEvents?: Pick<WebhookEvents, 'emit'>;
  now?: () => number;
}

export interface SubmitResult {
  job: Job;
  ended: boolean;
  /** True when an Idempotency-Key matched an earlier submit: `job` is that first job. */
  replayed: boolean;
}

export interface SubmitOptions {
  /** Hold the answer until the job ends or this many ms pass (`Prefer: wait`). */
  waitMs?: number | undefined;
  /** Fires when the client goes away, to drop its waiter. */
  signal?: AbortSignal | undefined;
  idempotencyKey?: string | undefined;
}

/**
 * What the job routes do, without HTTP: validate a request against the
 * model, store and enqueue it, read it back, wait for it, cancel it.
 */
export class JobService {
  private readonly now: () => number;

  constructor(private readonly deps: JobServiceDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** Validate everything that can be known at submit, so bad input is a 422 now and never a failed job later. */
  validate(body: CreateJobBody): { model: ModelVersion; inputs: Record<string, EncodedTensor> } {
    const model = this.deps.models.resolve(body.model, body.version === undefined ? undefined : String(body.version));
    const inputs = encodeInputs(model, body.input);
    if (body.webhook !== undefined) assertWebhookUrlAllowed(body.webhook, this.deps.webhookAllowPrivate);
    if (body.webhook_events_filter && !body.webhook) {
      throw invalidInput('webhook_events_filter is given without a webhook');
    }
    if (body.metadata && Buffer.byteLength(JSON.stringify(body.metadata)) > MAX_METADATA_BYTES) {
      throw invalidInput(`metadata is larger than ${MAX_METADATA_BYTES} bytes`);
    }
    return { model, inputs };
  }

  async submit(tenant: string, body: CreateJobBody, options: SubmitOptions = {}): Promise<SubmitResult> {
    const { waitMs, signal, idempotencyKey } = options;
    const { model, inputs } = this.validate(body);
    if (idempotencyKey) {
      const firstId = await this.deps.store.idempotentJobId(tenant, idempotencyKey);
      if (firstId) return this.replay(tenant, firstId, waitMs, signal);
    }
    await this.deps.queues.assertRoom();
    const id = uuidv4();
    const createdAt = this.now();
    const record: NewJobRecord = {
      id,
      tenant,
      model: model.name,
      version: model.version,
      createdAt,
      metadata: body.metadata ?? null,
      webhook: body.webhook ?? null,
      webhookEventsFilter: body.webhook ? [...new Set(body.webhook_events_filter ?? (['completed'] as const))] : [],
    };
    await this.deps.store.create(record);
    if (idempotencyKey) {
      // Claim after creating, so whoever reads the key finds a record behind it.
      const firstId = await this.deps.store.claimIdempotencyKey(tenant, idempotencyKey, id);
      if (firstId !== id) {
        await this.deps.store.delete(id);
        return this.replay(tenant, firstId, waitMs, signal);
      }
    }
    // Register before enqueueing: a fast worker may end the job before add() returns.
    const waiter = waitMs ? this.deps.waiters.register(id, waitMs) : undefined;
    const payload: InferPayload = { tenant, inputs };
    // Tells the worker this job has webhook events to send (it reads the record only for such jobs).
    if (record.webhook) payload.webhook_events = record.webhookEventsFilter;
    const { attempts, backoff } = JOB_CATALOG.infer;
    try {
      await this.deps.queues.get(model.name, model.version).add('infer', payload, {
        jobId: id,
        attempts,
        backoff,
        removeOnComplete: true,
        removeOnFail: { age: 24 * 3600, count: 10_000 },
      });
    } catch (err) {
      waiter?.cancel();
      throw err;
    }
    if (waiter) {
      signal?.addEventListener('abort', waiter.cancel, { once: true });
      const ended = await waiter.promise;
      const record = ended ? hashToRecord(ended) : await this.deps.store.get(id);
      if (record) return { job: toJob(record), ended: isEnded(record.status), replayed: false };
    }
    return { job: toJob(queuedRecord(record)), ended: false, replayed: false };
  }

  private async replay(tenant: string, id: string, waitMs?: number, signal?: AbortSignal): Promise<SubmitResult> {
    const job = await this.get(tenant, id, waitMs, signal);
    return { job, ended: isEnded(job.status), replayed: true };
  }

  /** The tenant's job; another tenant's id is a 404 exactly like an unknown one. */
  async get(tenant: string, id: string, waitMs?: number, signal?: AbortSignal): Promise<Job> {
    let record = await this.read(tenant, id);
    if (waitMs && !isEnded(record.status)) {
      const waiter = this.deps.waiters.register(id, waitMs);
      signal?.addEventListener('abort', waiter.cancel, { once: true });
      // Read again now that we are registered: it may have ended in between.
      record = await this.read(tenant, id);
      if (!isEnded(record.status)) {
        const ended = await waiter.promise;
        const published = ended ? hashToRecord(ended) : null;
        record = published && published.tenant === tenant ? published : await this.read(tenant, id);
      } else {
        waiter.cancel();
      }
    }
    return toJob(record);
  }

  async cancel(tenant: string, id: string): Promise<Job> {
    const outcome = await this.deps.store.cancel(id, tenant, this.now());
    if (outcome === 'missing') throw notFound('job_not_found', `No job with id "${id}"`);
    if (outcome !== 'canceled') {
      const status = outcome === 'already_canceled' ? 'canceled' : outcome;
      throw conflict(`The job has already ended (${status}); only queued or running jobs can be canceled`);
    }
    const record = await this.read(tenant, id);
    // Free the queue slot if no worker holds it yet; a held job is skipped by its worker.
    await this.deps.queues
      .get(record.model, record.version)
      .remove(id)
      .catch(() => 0);
    const job = toJob(record);
    // The cancel won the race with the worker's end (CANCEL_JOB is atomic), so this is the one job.completed.
    if (record.webhook && record.webhookEventsFilter.includes('completed')) {
      await this.deps.webhookEvents?.emit([{ tenant, url: record.webhook, type: 'job.completed', data: job }]);
    }
    return job;
  }

  private async read(tenant: string, id: string): Promise<JobRecord> {
    const record = await this.deps.store.get(id);
    if (!record || record.tenant !== tenant) throw notFound('job_not_found', `No job with id "${id}"`);
    return record;
  }
}

/** Every model input present, none unknown, each one decoded and checked against its spec. */
export function encodeInputs(model: ModelVersion, input: Record<string, unknown>): Record<string, EncodedTensor> {
  const known = new Set(model.inputs.map((s) => s.name));
  for (const name of Object.keys(input)) {
    if (!known.has(name)) {
      throw invalidInput(`Unknown input "${name}"; model ${model.name} takes ${[...known].map((n) => `"${n}"`).join(', ')}`);
    }
  }
  const out: Record<string, EncodedTensor> = {};
  for (const spec of model.inputs) {
    if (!(spec.name in input)) throw invalidInput(`Missing input "${spec.name}"`);
    out[spec.name] = encodeTensor(decodeInput(input[spec.name], spec));
  }
  return out;
}
