import { z } from 'zod';

/** The largest `max_batch_size` a model may set. */
export const MAX_BATCH_SIZE_LIMIT = 4096;

/** Histogram buckets for instances in a run or an envelope: powers of two up to MAX_BATCH_SIZE_LIMIT, so every size lands in a finite one. */
export const BATCH_SIZE_BUCKETS: readonly number[] = Array.from({ length: Math.log2(MAX_BATCH_SIZE_LIMIT) + 1 }, (_, i) => 2 ** i);

/**
 * `MODEL_REPOSITORY/<name>/config.json`: per-model batching policy, in the
 * spirit of Triton's `config.pbtxt`. Every field is optional.
 */
export const ModelConfigFile = z
  .object({
    /**
     * Largest number of instances stacked into one run. Ignored (0) for a
     * model that is not batched. 0 makes a model that would be batched run
     * one job at a time with its full shapes: for one with an output whose
     * first dimension is not the batch (a detector's boxes, NonZero's indices).
     */
    max_batch_size: z.number().int().min(0).max(MAX_BATCH_SIZE_LIMIT).optional(),
    /**
     * Whether jobs are stacked into one run. Absent: when every input and
     * output has a dynamic first dimension and no two inputs name it
     * differently. `true` also when the inputs name it differently (an
     * exporter naming the one batch axis apart on each input); `false`, as
     * `max_batch_size: 0`, never.
     */
    batched: z.boolean().optional(),
    /** Longest a worker holds the first job of a batch while waiting for more. */
    max_delay_ms: z.number().min(0).max(10_000).optional(),
    /** Threads ONNX Runtime may use inside one operator. */
    intra_op_num_threads: z.number().int().min(1).max(256).optional(),
    /**
     * Let ONNX Runtime's intra-op threads busy-wait between runs. Off by
     * default: spinning threads burn a core between micro-batches that the
     * gateway or other workers on the machine need (measured: 113% CPU for
     * an idle-ish worker with spinning, 16% without, same throughput).
     */
    allow_spinning: z.boolean().optional(),
  })
  .strict();
export type ModelConfigFile = z.infer<typeof ModelConfigFile>;

export const DEFAULT_MAX_BATCH_SIZE = 32;
export const DEFAULT_MAX_DELAY_MS = 5;
