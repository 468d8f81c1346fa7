import { z } from 'zod';
import { jsonObject } from './json-object.js';
import type { NestedArray, OutputArray } from './nested.js';

export const JOB_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
export const ENDED_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'canceled'];
export const isEnded = (s: JobStatus): boolean => ENDED_STATUSES.includes(s);

export const WEBHOOK_EVENT_FILTERS = ['start', 'completed'] as const;

/** A subset of the events: each at most once (`["start", "start"]` is refused as `["start", "completed", "start"]` is). */
export const WebhookEventsFilter = z
  .array(z.enum(WEBHOOK_EVENT_FILTERS))
  .max(WEBHOOK_EVENT_FILTERS.length)
  .refine((events) => new Set(events).size === events.length, 'each event at most once')
  .meta({ uniqueItems: true });
export type WebhookEventFilter = (typeof WEBHOOK_EVENT_FILTERS)[number];

export const MAX_METADATA_BYTES = 4096;

/** Model and tensor names: safe in URLs, queue names and Redis keys. */
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Model versions: positive integers, as the repository's folder names and the API's strings write them. */
export const VERSION_RE = /^[1-9][0-9]{0,8}$/;

/** An `Idempotency-Key`: 1-255 visible ASCII characters, as Stripe and the IETF draft take them. */
export const IDEMPOTENCY_KEY_RE = /^[\x21-\x7e]{1,255}$/;

/**
 * `POST /v1/jobs`. Shape only: whether `input` fits the model, and whether
 * the webhook URL is allowed, are checked after this (422, not 400).
 */
export const CreateJobBody = z
  .object({
    model: z.string().min(1).max(128),
    version: z.union([z.string().regex(VERSION_RE), z.number().int().positive()]).optional(),
    input: jsonObject(),
    webhook: z.string().optional(),
    webhook_events_filter: WebhookEventsFilter.optional(),
    metadata: jsonObject().optional(),
  })
  .strict();
export type CreateJobBody = z.infer<typeof CreateJobBody>;

export interface JobError {
  code: string;
  message: string;
}

/** The error of a job still queued at its Cancel-After deadline, however it was found so (a worker's sweep or take, a gateway's read). */
export const DEADLINE_EXCEEDED: JobError = { code: 'deadline_exceeded', message: 'The job was still queued at its Cancel-After deadline; it never ran.' };

export interface JobMetrics {
  queue_ms: number;
  inference_ms: number;
  batch_size: number;
}

/** The Job as docs/api.md defines it. */
export interface Job {
  id: string;
  object: 'job';
  model: string;
  version: string;
  status: JobStatus;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  output: Record<string, OutputArray> | null;
  error: JobError | null;
  metadata: Record<string, unknown> | null;
  metrics: JobMetrics | null;
  webhook: string | null;
  webhook_events_filter: WebhookEventFilter[];
  urls: { get: string; cancel: string };
}
