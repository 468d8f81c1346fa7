import type { Batch, CreateJobBody, CreateRolloutBody, Datatype, Job, ModelEvent, NestedArray, Rollout } from '@infer/contract';

export type { Batch, BatchList, BatchRequestCounts, BatchResultLine, BatchStatus, BatchItemStatus } from '@infer/contract';
export type {
  ModelDescription,
  ModelEvent,
  ModelEventType,
  Rollout,
  RolloutState,
  RoutingSource,
  RoutingWeights,
  VersionDetail,
  VersionState,
} from '@infer/contract';

/**
 * Request shapes the SDK adds to @infer/contract's, with `input` typed by the
 * three tensor forms. Only types come from the contract: the SDK carries none
 * of the server's validation schemas (zod) at run time.
 */

/** `{datatype, shape, data}`: a flat list of values in row-major order. */
export interface DataTensor {
  datatype: Datatype;
  shape: number[];
  data: Array<number | boolean>;
}

/** `{datatype, shape, b64}`: little-endian bytes, the fast path for large tensors. */
export interface B64Tensor {
  datatype: Datatype;
  shape: number[];
  b64: string;
}

/** One model input of one instance, in any of the three forms the API accepts (docs/api.md). */
export type TensorInput = NestedArray | DataTensor | B64Tensor;

/** `POST /v1/jobs`, with `input` typed by the tensor forms. */
export type CreateJobParams = Omit<CreateJobBody, 'input'> & { input: Record<string, TensorInput> };

/** One line of a batch: an instance's input and the caller's id for it. */
export interface BatchItem {
  custom_id?: string;
  input: Record<string, TensorInput>;
}

/** `POST /v1/batches` as JSON. */
export interface CreateBatchParams {
  model: string;
  version?: string | number;
  items: BatchItem[];
  webhook?: string;
  webhook_events_filter?: Array<'start' | 'completed'>;
  metadata?: Record<string, unknown>;
}

/** `POST /v1/batches` as NDJSON: what goes in the query string. */
export interface UploadBatchParams {
  model: string;
  version?: string | number;
  webhook?: string;
  /**
   * How the source's bytes are compressed, sent as `Content-Encoding` (the gateway undoes it as it reads).
   * A file path is looked at: one that starts as gzip does (`rows.ndjson.gz`) is sent as `gzip` unless
   * this says otherwise. @default `identity`, or `gzip` for a gzip file
   */
  contentEncoding?: 'gzip' | 'deflate' | 'br' | 'identity';
}

export interface ListBatchesParams {
  limit?: number;
  /** A batch id: the page starts after it. */
  after?: string;
}

/**
 * `POST /v1/models/{name}/rollouts`: the contract's body as a caller writes
 * it (the limits have the server's defaults: max_error_rate 0.01,
 * max_p50_latency_ratio 2).
 */
export type StartRolloutParams = Omit<CreateRolloutBody, 'version' | 'max_error_rate' | 'max_p50_latency_ratio'> & {
  version: string | number;
  /** Roll back when more than this share of the version's jobs fail in a step (0–1). @default 0.01 */
  max_error_rate?: number;
  /** Roll back when the version's p50 latency is over this many times the replaced versions'. @default 2 */
  max_p50_latency_ratio?: number;
};

export interface ListModelEventsParams {
  /** 1–100. @default 20 */
  limit?: number;
  /** An event id: the page starts after it (older events). */
  after?: string;
}

/** `GET /v1/models/{name}/events`: one page, newest first. */
export interface ModelEventList {
  object: 'list';
  data: ModelEvent[];
  has_more: boolean;
}

// --- webhooks ---------------------------------------------------------------
//
// The delivery log's shapes, shared with the server (@infer/contract).
import type { WebhookDelivery } from '@infer/contract';
export type { WebhookAttempt, WebhookDelivery, WebhookDeliveryState, WebhookDeliveryTrigger, WebhookEventType, WebhookSubject } from '@infer/contract';

/**
 * The body a receiver gets (verify it first, with the secret from
 * `webhooks.secret()`): `data` is the Job or Batch as a GET would have
 * answered when the event happened, `timestamp` when that was.
 */
export type WebhookEvent =
  | { type: 'job.started' | 'job.completed'; timestamp: string; data: Job }
  | { type: 'batch.completed'; timestamp: string; data: Batch };

/** A delivery has ended (`succeeded` or `failed`): no attempt is due, and it may be resent. */
export function isWebhookDeliveryEnded(delivery: Pick<WebhookDelivery, 'state'>): boolean {
  return delivery.state !== 'pending';
}

export function isBatchEnded(batch: Pick<Batch, 'status'>): boolean {
  return batch.status === 'completed' || batch.status === 'canceled';
}

/** A rollout has ended: `completed`, `rolled_back` or `canceled`. */
export function isRolloutEnded(rollout: Pick<Rollout, 'state'>): boolean {
  return rollout.state !== 'running';
}
