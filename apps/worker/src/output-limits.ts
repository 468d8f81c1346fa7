import { MAX_OUTPUT_BYTES_CEILING, MAX_OUTPUT_BYTES_DEFAULT } from '@infer/config';
import type { JobError } from '@infer/contract';

/**
 * Bounds on what a run's outputs may put into Redis, shared by interactive
 * jobs and batch items.
 *
 * A model's outputs can be far larger than its inputs (an Expand, a mask, a
 * vocabulary's logits), and nothing at submit time says how large. Unbounded,
 * one job's output could pass what Redis takes in one value (512 MB,
 * `proto-max-bulk-len`) or in one command (1 GB, `client-query-buffer-limit`:
 * Redis closes the connection), so its end could never be written (a job
 * with a 600 MB output stayed `running`, its batch-mates with it); or it
 * could pass what can be printed as one JSON string (V8's longest string
 * is ~536 million characters, and an FP16 output prints as up to about 13
 * of them a byte: MAX_OUTPUT_BYTES_CEILING). Past these bounds the job or
 * item fails alone, `output_too_large`, and its neighbours end as usual.
 */

/** The two bounds a worker holds outputs to. */
export interface OutputLimits {
  /** MAX_OUTPUT_BYTES: one job's or item's outputs. */
  maxOutputBytes: number;
  /** One call's: CALL_OUTPUT_BYTES (tests lower it). */
  callOutputBytes: number;
}

/** The limits from a worker's options: MAX_OUTPUT_BYTES (its default unless given, never past its ceiling), the call's bound CALL_OUTPUT_BYTES unless given. */
export function outputLimits(options: { maxOutputBytes?: number; callOutputBytes?: number }): OutputLimits {
  return {
    maxOutputBytes: Math.min(options.maxOutputBytes ?? MAX_OUTPUT_BYTES_DEFAULT, MAX_OUTPUT_BYTES_CEILING),
    callOutputBytes: options.callOutputBytes ?? CALL_OUTPUT_BYTES,
  };
}

/**
 * The most output bytes one script call that ends work carries (the records
 * of the envelopes one FINISH ends, or one chunk's stored results): a
 * quarter of Redis's 1 GB limit on one command.
 */
export const CALL_OUTPUT_BYTES = 256 * 1024 * 1024;

/** The output bytes of one instance's outputs. */
export function instanceOutputBytes(outputs: ReadonlyArray<{ bytes: { byteLength: number } }>): number {
  let n = 0;
  for (const o of outputs) n += o.bytes.byteLength;
  return n;
}

/** The error of a job or item whose own outputs are over MAX_OUTPUT_BYTES. */
export function outputTooLarge(bytes: number, limit: number): JobError {
  return { code: 'output_too_large', message: `the outputs of this input are ${bytes} bytes, over the limit of ${limit} (MAX_OUTPUT_BYTES); nothing of them is kept` };
}

/**
 * The error of a job or item whose outputs are within MAX_OUTPUT_BYTES but do
 * not fit beside those of the work they are stored with (`what`: the jobs
 * submitted with it in one envelope, or its batch chunk's items): together
 * they would pass CALL_OUTPUT_BYTES.
 */
export function outputsTooLargeTogether(bytes: number, what: string, bound = CALL_OUTPUT_BYTES): JobError {
  return {
    code: 'output_too_large',
    message: `the outputs of this input (${bytes} bytes) did not fit beside those of ${what}: together they passed ${bound} bytes; send inputs with outputs this large fewer at a time`,
  };
}
