import type { JobError } from '@infer/contract';
import { UnbatchedOutputError } from '@infer/models';

/**
 * The error of a job or row whose input a worker died or hung on while running
 * it on its own: ONNX Runtime crashed the process on it (an integer overflow's
 * SIGFPE), which no bisection can catch. Taken again, it is not run again.
 */
export function crashedOnInput(): JobError {
  return { code: 'inference_failed', message: "the worker running this input on its own died or hung (ONNX Runtime crashed on it); it is not run again" };
}

/**
 * Run `rows` with `run`; when it throws, run each half on its own, down to
 * single rows, and `fail` each single row that still throws, with the
 * error as an `inference_failed` JobError. One poison among n rows costs
 * about 2·log2(n) extra runs; the rows beside it end as if run without it.
 * Shared by interactive micro-batches and bulk slices.
 */
export async function runIsolating<R>(rows: readonly R[], run: (rows: readonly R[]) => Promise<void>, fail: (row: R, error: JobError) => void): Promise<void> {
  try {
    await run(rows);
  } catch (err) {
    if (rows.length === 1) {
      const message = err instanceof UnbatchedOutputError ? err.message : `ONNX Runtime failed: ${(err as Error).message}`;
      fail(rows[0]!, { code: 'inference_failed', message });
      return;
    }
    const half = Math.ceil(rows.length / 2);
    await runIsolating(rows.slice(0, half), run, fail);
    await runIsolating(rows.slice(half), run, fail);
  }
}
