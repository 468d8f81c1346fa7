import { z } from 'zod';
import { jsonObject } from './json-object.js';
import { DATATYPES } from './datatypes.js';
import { VERSION_RE, WebhookEventsFilter, type JobError } from './job.js';
import type { NestedArray, OutputArray } from './nested.js';

/**
 * Batches: bulk offline scoring (`/v1/batches`, docs/api.md "Batches"). The
 * request and response shapes, and the queue payload that carries a chunk of
 * a batch's rows from the gateway to a worker.
 */
export const BATCH_STATUSES = ['queued', 'running', 'completed', 'canceled'] as const;
export type BatchStatus = (typeof BATCH_STATUSES)[number];
export const isBatchEnded = (s: BatchStatus): boolean => s === 'completed' || s === 'canceled';

/** The status of one item in the results. */
export type BatchItemStatus = 'succeeded' | 'failed' | 'canceled';

/**
 * The longest a request may take to arrive, body included: a gateway cuts a
 * slower one with 408 (Node's `server.requestTimeout`, set to this). It
 * bounds an upload, so a batch still unsealed well after it (its gateway
 * died mid-upload, and no client ever got its id) is known abandoned.
 */
export const REQUEST_TIME_LIMIT_MS = 5 * 60_000;

/**
 * An unsealed batch this long after its record was written is an upload
 * whose gateway died: the limit above, and room for clocks that differ
 * between machines. The workers' sweep discards it.
 */
export const ABANDONED_UPLOAD_MS = REQUEST_TIME_LIMIT_MS + 10 * 60_000;

/** Longest `custom_id`; a longer one makes its item fail. */
export const MAX_CUSTOM_ID_LENGTH = 512;

/**
 * Whether a `custom_id` is within MAX_CUSTOM_ID_LENGTH characters, counted
 * as the schema counts them (code points: an emoji is one, though two UTF-16
 * units). Every check of the limit uses this, so none drops an id another took.
 */
export function customIdFits(id: string): boolean {
  if (id.length <= MAX_CUSTOM_ID_LENGTH) return true;
  let n = 0;
  for (const _ of id) if (++n > MAX_CUSTOM_ID_LENGTH) return false;
  return true;
}

/**
 * `POST /v1/batches` as JSON. Only the batch-level fields are checked here
 * (a 400 or 422 for the whole request); each item is checked on its own, and
 * a bad one becomes a failed item rather than failing the batch.
 */
export const CreateBatchBody = z
  .object({
    model: z.string().min(1).max(128),
    version: z.union([z.string().regex(VERSION_RE), z.number().int().positive()]).optional(),
    items: z.array(z.unknown()).min(1, 'a batch needs at least one item'),
    webhook: z.string().optional(),
    /** `completed` sends `batch.completed`; there is no batch start event, so `start` alone sends nothing. */
    webhook_events_filter: WebhookEventsFilter.optional(),
    metadata: jsonObject().optional(),
  })
  .strict();
export type CreateBatchBody = z.infer<typeof CreateBatchBody>;

/** The query string of an NDJSON upload; the body is the items. */
export const CreateBatchQuery = z
  .object({
    model: z.string().min(1).max(128),
    version: z.string().regex(VERSION_RE).optional(),
    webhook: z.string().optional(),
  })
  .strict();
export type CreateBatchQuery = z.infer<typeof CreateBatchQuery>;

/** One item: a JSON array element, or one NDJSON line. */
export const BatchItem = z
  .object({
    custom_id: z.string().max(MAX_CUSTOM_ID_LENGTH).optional(),
    input: jsonObject(),
  })
  .strict();
export type BatchItem = z.infer<typeof BatchItem>;

export interface BatchRequestCounts {
  total: number;
  succeeded: number;
  failed: number;
  canceled: number;
}

/** The Batch as docs/api.md defines it. */
export interface Batch {
  id: string;
  object: 'batch';
  model: string;
  version: string;
  status: BatchStatus;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  request_counts: BatchRequestCounts;
  metadata: Record<string, unknown> | null;
  urls: { get: string; results: string; cancel: string };
}

/** `GET /v1/batches`, cursor-paginated as OpenAI's list endpoints are. */
export interface BatchList {
  object: 'list';
  data: Batch[];
  has_more: boolean;
  first_id?: string;
  last_id?: string;
}

/** One line of `GET /v1/batches/{id}/results`. */
export interface BatchResultLine {
  index: number;
  custom_id: string | null;
  status: BatchItemStatus;
  output: Record<string, OutputArray> | null;
  error: JobError | null;
}

/**
 * One input of a chunk: every valid row's tensor, concatenated as raw
 * little-endian bytes in row order, at `[offset, offset + bytes)` of the
 * chunk's packed inputs. Those bytes are stored beside the queue job, as a
 * binary Redis value (BatchStore.chunkInputs), not in the job's JSON: no
 * base64 on either side and no half-megabyte string through BullMQ's
 * scripts. When every row has the same shape (`shape`, one instance's shape)
 * the worker views the bytes as one [rows, ...shape] tensor without touching
 * each row; when the model has variable dimensions each row's shape is
 * listed in `shapes`.
 */
export const BulkInputSchema = z.object({
  datatype: z.enum(DATATYPES),
  shape: z.array(z.number().int().nonnegative()).optional(),
  shapes: z.array(z.array(z.number().int().nonnegative())).optional(),
  offset: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
});
export type BulkInput = z.infer<typeof BulkInputSchema>;

const ItemErrorSchema = z.object({ code: z.string(), message: z.string() });

/**
 * A chunk of a batch: the consecutive items `start … start + count - 1`.
 * Items that failed validation at the gateway are listed in `failures` (by
 * offset in the chunk) and carry no tensor; the others, `rows` of them, are
 * packed in `inputs` in offset order.
 */
export const BulkChunkPayload = z.object({
  tenant: z.string(),
  batch: z.string(),
  chunk: z.number().int().nonnegative(),
  start: z.number().int().nonnegative(),
  count: z.number().int().positive(),
  rows: z.number().int().nonnegative(),
  custom_ids: z.array(z.string().nullable()),
  failures: z.array(z.object({ offset: z.number().int().nonnegative(), error: ItemErrorSchema })),
  inputs: z.record(z.string(), BulkInputSchema),
});
export type BulkChunkPayload = z.infer<typeof BulkChunkPayload>;
