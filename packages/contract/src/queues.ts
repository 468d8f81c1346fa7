import { z } from 'zod';
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

export const InferPayload = z.object({
  tenant: z.string(),
  inputs: z.record(z.string(), EncodedTensorSchema),
  /**
   * The job's `webhook_events_filter`, present only when it has a webhook:
   * the worker reads job records for webhook events only for jobs that carry
   * this, so jobs without a webhook cost nothing extra.
   */
  webhook_events: z.array(z.enum(WEBHOOK_EVENT_FILTERS)).optional(),
});
export type InferPayload = z.infer<typeof InferPayload>;

/**
 * One delivery run of a webhook event (its body, URL and log live in Redis
 * under `keys(prefix).webhookEvent(eventId)`). `scheduled` runs follow the
 * retry schedule; a `manual` run (a resend) is one attempt.
 */
export const WebhookDeliveryPayload = z.object({
  eventId: z.string().min(1),
  trigger: z.enum(['scheduled', 'manual']),
});
export type WebhookDeliveryPayload = z.infer<typeof WebhookDeliveryPayload>;

/** The BullMQ queue of webhook deliveries, separate from inference so a slow receiver never holds up a model. */
export const WEBHOOK_QUEUE = 'webhooks';

export const JOB_CATALOG = {
  infer: {
    payload: InferPayload,
    /**
     * A transient failure (the worker lost Redis mid-batch, say) is retried;
     * bad input is thrown as an UnrecoverableError and never is.
     */
    attempts: 3,
    backoff: { type: 'exponential' as const, delay: 500 },
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

/**
 * Bulk work (chunks of batches) has a queue per model version of its own,
 * so interactive jobs never wait behind a batch's backlog in Redis; the
 * worker's BulkWorker yields to interactive work in-process too.
 */
export function bulkQueueName(model: string, version: string): string {
  return `bulk.${model}.v${version}`;
}

/** Redis keys this platform writes itself (BullMQ's own keys share the prefix). */
export function keys(prefix: string) {
  return {
    job: (id: string) => `${prefix}:job:${id}`,
    /** Pub/sub channel: a job id is published here when the job ends. */
    jobEnded: `${prefix}:events:job-ended`,
    /** Hash: one batch's record and request counts. */
    batch: (id: string) => `${prefix}:batch:${id}`,
    /** Hash: chunk index → that chunk's result lines (NDJSON), written once when the chunk ends. */
    batchResults: (id: string) => `${prefix}:batch:${id}:results`,
    /** Hash: chunk index → custom ids and failures of a chunk not yet ended, to render it if the batch is canceled. */
    batchPending: (id: string) => `${prefix}:batch:${id}:pending`,
    /** Hash: chunk index → the packed input bytes of a chunk not yet run (binary). */
    batchInputs: (id: string) => `${prefix}:batch:${id}:inputs`,
    /** Sorted set: a tenant's batch ids by creation time, for listing. */
    tenantBatches: (tenant: string) => `${prefix}:batches:${tenant}`,
    /** The tenant's `whsec_` signing secret, created on first use (SET NX). */
    webhookSecret: (tenant: string) => `${prefix}:webhook:secret:${tenant}`,
    /** Hash: one webhook event (message): tenant, type, url, body, state. */
    webhookEvent: (eventId: string) => `${prefix}:webhook:event:${eventId}`,
    /** List of JSON attempts of one event, oldest first. */
    webhookAttempts: (eventId: string) => `${prefix}:webhook:attempts:${eventId}`,
    /** List of the event ids of one job or batch, oldest first. */
    webhookDeliveries: (kind: 'job' | 'batch', id: string) => `${prefix}:webhook:deliveries:${kind}:${id}`,
  };
}
