export { InferClient, type InferClientOptions } from './client.js';
export { InferApiError, InferArgumentError, InferTimeoutError, isInferApiError, type ProblemDetails } from './errors.js';
export { Models, type CallOptions } from './models.js';
export {
  Jobs,
  isJobEnded,
  MAX_WAIT_SECONDS,
  type CancelAfter,
  type CreateJobOptions,
  type GetJobOptions,
  type RunJobOptions,
  type WaitJobOptions,
} from './jobs.js';
export { Batches, type WaitBatchOptions } from './batches.js';
export { Webhooks } from './webhooks.js';
export { tensorB64 } from './tensor.js';
export { answerText } from './answer-text.js';
export { halfBits } from '@infer/contract';
export { parseNdjson, type UploadChunk, type UploadSource } from './ndjson.js';
export * from './types.js';
export type { Job, JobStatus, JobError, JobMetrics, ModelInfo, TensorSpec, Datatype, NestedArray, OutputArray } from '@infer/contract';
