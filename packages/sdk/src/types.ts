import type { Batch, CreateJobBody, Datatype, NestedArray } from '@infer/contract';

export type { Batch, BatchList, BatchRequestCounts, BatchResultLine, BatchStatus, BatchItemStatus } from '@infer/contract';

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

/** One model input of one instance, in any of the three forms API.md accepts. */
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
}

export interface ListBatchesParams {
  limit?: number;
  /** A batch id: the page starts after it. */
  after?: string;
}

export function isBatchEnded(batch: Pick<Batch, 'status'>): boolean {
  return batch.status === 'completed' || batch.status === 'canceled';
}
