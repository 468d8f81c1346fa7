import { z } from 'zod';
import { DATATYPES } from './datatypes.js';

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
});
export type InferPayload = z.infer<typeof InferPayload>;

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
} as const;

/**
 * One BullMQ queue per model version: a worker batches only instances of one
 * version, and a queue's waiting list is exactly what one batcher can take.
 * BullMQ queue names may not contain ':'.
 */
export function inferQueueName(model: string, version: string): string {
  return `infer.${model}.v${version}`;
}

/** Redis keys this platform writes itself (BullMQ's own keys share the prefix). */
export function keys(prefix: string) {
  return {
    job: (id: string) => `${prefix}:job:${id}`,
    /** Pub/sub channel: a job id is published here when the job ends. */
    jobEnded: `${prefix}:events:job-ended`,
  };
}
