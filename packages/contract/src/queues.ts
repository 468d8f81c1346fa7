import { createHash, randomFillSync } from 'node:crypto';
import { z } from 'zod';
import { jsonObject } from './json-object.js';
import { DATATYPES } from './datatypes.js';
import { WEBHOOK_EVENT_FILTERS } from './job.js';
import { BulkChunkPayload } from './batch.js';

/**
 * The job catalog: every kind of queue job, its payload schema and its retry
 * policy. The gateway builds payloads that satisfy these schemas; the worker
 * parses every payload again after dequeueing, so a payload written by an
 * older or buggy producer fails loudly instead of half-running.
 */
export const EncodedTensorSchema = z.object({
  datatype: z.enum(DATATYPES),
  shape: z.array(z.number().int().nonnegative()),
  b64: z.string(),
});

/**
 * One job of an envelope, as the gateway accepted it. Everything but the
 * inputs, which travel as bytes beside the envelope (its `in` field, packed input by input).
 */
export const EnvelopeJob = z.object({
  id: z.string(),
  tenant: z.string(),
  /** Epoch ms when the gateway accepted it. */
  created_at: z.number(),
  /** `Cancel-After`: epoch ms after which the job, if still queued, ends canceled (`deadline_exceeded`) without running. */
  deadline: z.number().optional(),
  /** Each input's instance shape, in the model's input order; present only when a spec has a variable dimension. */
  shapes: z.array(z.array(z.number().int().nonnegative())).optional(),
  /** The submitter holds its request open for the result (`Prefer: wait`): send it the ended record. */
  wait: z.literal(true).optional(),
  metadata: jsonObject().optional(),
  webhook: z.string().optional(),
  webhook_events_filter: z.array(z.enum(WEBHOOK_EVENT_FILTERS)).optional(),
  /**
   * W3C trace context of the job's enqueue span, present only when the
   * gateway traces (OTEL_EXPORTER_OTLP_ENDPOINT): the worker's spans for this
   * job are its children, so one trace follows the job across processes.
   */
  traceparent: z.string().max(128).optional(),
  /**
   * The job's Idempotency-Key, as its Redis key names it (a SHA-256 digest, base64url): whoever ends the
   * job has the key expire with its record (JobStore.shortenIdempotencyKeys).
   */
  idempotency: z.string().max(64).optional(),
});
export type EnvelopeJob = z.infer<typeof EnvelopeJob>;

/**
 * The `data` of an envelope: one BullMQ job that carries many jobs of one
 * model version, accepted by one gateway in the same moment. The queue,
 * the dashboard and the worker see one unit of work; every job in it keeps
 * its own id, record, status, output and webhook events.
 */
export const EnvelopeData = z.object({
  model: z.string(),
  version: z.string(),
  /** The pub/sub channel of the gateway that accepted it, where ended records of `wait` jobs go. */
  gateway: z.string(),
  jobs: z.array(EnvelopeJob).min(1),
});
export type EnvelopeData = z.infer<typeof EnvelopeData>;

/**
 * One delivery run of a webhook event (its body, URL and log live in Redis
 * under `keys(prefix).webhookEvent(eventId)`). `scheduled` runs follow the
 * retry schedule; a `manual` run (a resend) is one attempt.
 */
export const WebhookDeliveryPayload = z.object({
  eventId: z.string().min(1),
  trigger: z.enum(['scheduled', 'manual']),
  /** A manual run's resend (the token it marked the event with): the run acts only while the event is that resend's. */
  resend: z.string().min(1).optional(),
});
export type WebhookDeliveryPayload = z.infer<typeof WebhookDeliveryPayload>;

/**
 * The length every BullMQ queue's event stream is trimmed to (`streams.events.maxLen`).
 * BullMQ keeps 10,000 events a queue by default, ~1-2 MB each; nothing here reads
 * them but the dashboard and an operator's QueueEvents, for whom the last thousand
 * (~100-200 KB a queue) tell what is happening now. The interactive queues' own
 * scripts add none: only stalls and BullMQ's maintenance do.
 */
export const QUEUE_EVENTS_MAX_LEN = 1000;

/** The BullMQ queue of webhook deliveries, separate from inference so a slow receiver never holds up a model. */
export const WEBHOOK_QUEUE = 'webhooks';

/** The webhook delivery queue: its name and tagged prefix (its own hash tag: it serves every model). */
export function webhookQueue(prefix: string): QueueRef {
  return { name: WEBHOOK_QUEUE, prefix: `${prefix}:{webhooks}` };
}

export const JOB_CATALOG = {
  envelope: {
    payload: EnvelopeData,
    /**
     * Interactive envelopes are written and taken by the platform's own
     * scripts (packages/job-store), not by Queue.add: no BullMQ retries. A
     * worker that dies or hangs loses its lock and the stalled check puts
     * the envelope back; past `maxStalledCount` stalls (the third, with 2) its jobs end as
     * failed (`worker_lost`). An inference error fails only the bad instances.
     */
    maxStalledCount: 2,
  },
  bulk: {
    payload: BulkChunkPayload,
    /**
     * A chunk of a batch (many rows). A transient failure retries the whole
     * chunk; writing its results is idempotent, so a chunk that ran twice
     * (its worker died after writing) is counted once.
     */
    attempts: 3,
    backoff: { type: 'exponential' as const, delay: 1000 },
    /** Stalls (its worker died or hung) a chunk may have and still run again: past them its items fail (`worker_lost`). */
    maxStalledCount: 2,
  },
  'webhook-delivery': {
    payload: WebhookDeliveryPayload,
    /**
     * Attempts are `WEBHOOK_RETRY_DELAYS_MS.length + 1`, set at enqueue; the
     * delivery worker's backoff strategy picks each delay from that schedule
     * (or the receiver's `Retry-After`). See @infer/webhooks.
     */
    backoff: { type: 'webhook' as const },
  },
} as const;

/**
 * One BullMQ queue per model version: a worker batches only instances of one
 * version, and a queue's waiting list is exactly what one batcher can take.
 * BullMQ queue names may not contain ':'.
 */
export function inferQueueName(model: string, version: string): string {
  return `infer.${model}.v${version}`;
}

/** Length of a queue's hash tag, and of the tag that starts every job id of that queue. */
export const QUEUE_TAG_LENGTH = 8;

/**
 * The Redis Cluster hash tag of one model version: 8 base32 characters of a
 * hash of its name and version. Every key an interactive script touches
 * (the BullMQ queue, its envelopes, the job index and counters, the job
 * records) carries `{tag}`, so each script stays within one slot, as
 * BullMQ's `{prefix}` convention asks; and every job id starts with it, so
 * a job's keys are found from its id alone.
 */
export function queueTag(model: string, version: string): string {
  const name = `${model}\0${version}`;
  let tag = tags.get(name);
  if (tag === undefined) {
    const digest = createHash('sha256').update(name).digest();
    tag = '';
    for (let i = 0; i < QUEUE_TAG_LENGTH; i++) tag += BASE32[digest[i]! & 31];
    tags.set(name, tag);
  }
  return tag;
}

/** Tags computed so far: every submit asks for its model version's. */
const tags = new Map<string, string>();

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** A job id: its queue's tag, then 128 random bits (base64url). */
export const JOB_ID_RE = /^[a-z2-7]{8}[A-Za-z0-9_-]{22}$/;

export function newJobId(tag: string): string {
  return tag + randomBase64url(16);
}

/** The id of an envelope (its BullMQ job id): 96 random bits, never a bare number. */
export function newEnvelopeId(): string {
  return 'e' + randomBase64url(12);
}

/**
 * Random bytes from a pool refilled 4 KB at a time, as base64url: one call
 * into the system's generator per ~250 ids instead of one per id, on the
 * gateway's hottest path (uuid's v4 pools its bytes the same way).
 */
const pool = Buffer.alloc(4096);
let poolAt = pool.length;
function randomBase64url(bytes: number): string {
  if (poolAt + bytes > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  poolAt += bytes;
  return pool.toString('base64url', poolAt - bytes, poolAt);
}

/** Where the BullMQ queue of a model version lives: what `new Queue(name, { prefix })` takes. */
export interface QueueRef {
  name: string;
  prefix: string;
}

/** The interactive queue of a model version: its BullMQ name and tagged prefix. */
export function interactiveQueue(prefix: string, model: string, version: string): QueueRef {
  return { name: inferQueueName(model, version), prefix: `${prefix}:{${queueTag(model, version)}}` };
}

/**
 * Every key of one interactive queue (all in the slot of its tag). BullMQ's
 * own are `wait` … `events`; the platform adds the job index (job id →
 * envelope, for jobs not yet ended), the queued-instance counter, and the
 * job records.
 */
export function interactiveKeys(prefix: string, model: string, version: string) {
  const ref = interactiveQueue(prefix, model, version);
  const base = `${ref.prefix}:${ref.name}:`;
  return {
    ref,
    /** BullMQ's key of a job id (an envelope) is `base + id`. */
    base,
    wait: base + 'wait',
    active: base + 'active',
    meta: base + 'meta',
    marker: base + 'marker',
    /** String: instances accepted and not yet taken by a worker (MAX_QUEUE_DEPTH counts these). */
    queued: base + 'queued',
    /** Hash: tenant → its instances accepted and not yet taken (kept only with TENANT_MAX_QUEUED). */
    tenants: base + 'tenants',
    /** Hash: tenant → how many instances of that tenant this queue may hold of TENANT_MAX_QUEUED (see allowanceValue). */
    allowances: base + 'allowances',
    /** Sorted set: job id → its Cancel-After deadline (epoch ms), while it has not ended. */
    deadlines: base + 'deadlines',
    /** List: ids of ended jobs whose job.completed webhook event is yet to be created (see CompletedEventsOutbox). */
    outbox: base + 'outbox',
    /** Hash: job id → `<queue name>:<envelope id>`, while the job has not ended. */
    index: jobIndexKey(ref.prefix),
    /** String: an envelope's inputs, when they are too large to pass through the scripts (its hash then has `ix`, not `in`). */
    inputs: (envelopeId: string) => `${base}${envelopeId}:in`,
  };
}

/**
 * The field of a queue's meta hash that holds how many instances the queue
 * may hold of MAX_QUEUE_DEPTH (its allowance). The allowances of every queue
 * add up to at most the limit, and a queue's own script keeps its count
 * within its allowance. (A tenant's allowance of TENANT_MAX_QUEUED is the
 * tenant's field of the queue's `allowances` hash.)
 */
export const DEPTH_ALLOWANCE_FIELD = 'allow';

/**
 * An allowance as stored: its instances, then the limit it was granted
 * under. A script checking under another limit (a gateway whose setting
 * changed) takes it for none, and the gateway makes room afresh, every
 * queue's allowance counted, under whichever limit granted it.
 */
export const allowanceValue = (instances: number, limit: number): string => `${instances} ${limit}`;

/** The instances of a stored allowance, whatever limit granted it (0 for none). */
export const allowanceInstances = (value: string | null | undefined): number => Number(value?.split(' ')[0] ?? 0) || 0;

/** The job index of a tag: one per tag, so a job id alone leads to it. */
function jobIndexKey(taggedPrefix: string): string {
  return `${taggedPrefix}:jobs`;
}

/** The keys a job id leads to: its record (once it has ended) and its tag's index. */
export function jobKeys(prefix: string, id: string): { taggedPrefix: string; record: string; index: string } {
  const taggedPrefix = `${prefix}:{${id.slice(0, QUEUE_TAG_LENGTH)}}`;
  return { taggedPrefix, record: `${taggedPrefix}:job:${id}`, index: jobIndexKey(taggedPrefix) };
}

/**
 * Bulk work (chunks of batches) has a queue per model version of its own,
 * so interactive jobs never wait behind a batch's backlog in Redis; the
 * worker's BulkWorker yields to interactive work in-process too.
 */
export function bulkQueueName(model: string, version: string): string {
  return `bulk.${model}.v${version}`;
}

/** The BullMQ job id of a chunk: deterministic, so adding it twice adds it once. BullMQ ids may not contain ':'. */
export const chunkJobId = (batchId: string, chunk: number): string => `${batchId}.${chunk}`;

/** The bulk queue of a model version, in the hash tag of its interactive queue. */
export function bulkQueue(prefix: string, model: string, version: string): QueueRef {
  return { name: bulkQueueName(model, version), prefix: `${prefix}:{${queueTag(model, version)}}` };
}

/** Redis keys this platform writes itself (BullMQ's own keys share the prefix). */
/** A model version's member of the registry of interactive queues (`keys(prefix).interactiveQueues`). */
export const queueMember = (model: string, version: string): string => JSON.stringify([model, version]);

/** A registry member read back; undefined for one that is not a `[model, version]` pair. */
export function parseQueueMember(member: string): { name: string; version: string } | undefined {
  try {
    const parsed: unknown = JSON.parse(member);
    if (Array.isArray(parsed) && parsed.length === 2 && typeof parsed[0] === 'string' && typeof parsed[1] === 'string') return { name: parsed[0], version: parsed[1] };
  } catch {
    // not one of ours: skipped
  }
  return undefined;
}

export function keys(prefix: string) {
  return {
    /** A job's record once it has ended (see `jobKeys`). */
    job: (id: string) => jobKeys(prefix, id).record,
    /** Pub/sub channel of one gateway: the ended records of the jobs its requests wait for. */
    gatewayChannel: (gatewayId: string) => `${prefix}:gateway:${gatewayId}`,
    /** Hash: one batch's record and request counts. Every key of a batch carries `{id}`: its scripts stay in one slot. */
    batch: (id: string) => `${prefix}:batch:{${id}}`,
    /** Hash: chunk index → that chunk's result lines (NDJSON), written once when the chunk ends. */
    batchResults: (id: string) => `${prefix}:batch:{${id}}:results`,
    /** Hash: chunk index → custom ids and failures of a chunk not yet ended, to render it if the batch is canceled. */
    batchPending: (id: string) => `${prefix}:batch:{${id}}:pending`,
    /** Hash: chunk index → the packed input bytes of a chunk not yet run (binary). */
    batchInputs: (id: string) => `${prefix}:batch:{${id}}:inputs`,
    /**
     * String "<tenant> <created at>": where a batch stood in its tenant's list once its entry went (its
     * upload failed, or it expired), so a page's `last_id` naming it still works as a cursor for a while.
     */
    batchGone: (id: string) => `${prefix}:batch:{${id}}:gone`,
    /**
     * Set of `[model, version]` JSON arrays: every model version whose interactive or bulk queue a
     * gateway has written to. Each gateway counts their interactive queues against MAX_QUEUE_DEPTH and
     * TENANT_MAX_QUEUED, and reports the queues' gauges, for the versions it does not route to
     * (draining, removed, unknown to it) too.
     */
    interactiveQueues: `${prefix}:interactive-queues`,
    /**
     * String: held (SET NX PX, a random token) by the gateway moving the queues' allowances of MAX_QUEUE_DEPTH
     * or TENANT_MAX_QUEUED (see LimitsLock, EnvelopeWriter).
     */
    limitsLock: `${prefix}:limits-lock`,
    /** Sorted set: a tenant's batch ids by creation time, for listing. */
    tenantBatches: (tenant: string) => `${prefix}:batches:${tenant}`,
    /** Sorted set: batches not yet ended, by creation time, for the sweep that ends chunks lost from the queue. */
    runningBatches: `${prefix}:batches-running`,
    /** The tenant's `whsec_` signing secret, created on first use (SET NX). */
    webhookSecret: (tenant: string) => `${prefix}:webhook:secret:${tenant}`,
    /** Hash: one webhook event (message): tenant, type, url, body, state. Tagged by its id, with its attempts: an attempt writes both in one script (RECORD_ATTEMPT). */
    webhookEvent: (eventId: string) => `${prefix}:webhook:event:{${eventId}}`,
    /** List of JSON attempts of one event, oldest first. */
    webhookAttempts: (eventId: string) => `${prefix}:webhook:event:{${eventId}}:attempts`,
    /** List of the event ids of one job or batch, oldest first. */
    webhookDeliveries: (kind: 'job' | 'batch', id: string) => `${prefix}:webhook:deliveries:${kind}:${id}`,
  };
}
