/**
 * Raw ONNX Runtime throughput in this process: one session, one input
 * tensor of `batch` random rows prepared up front, `session.run` back to
 * back for a fixed time after a warm-up. This is the ceiling the worker's
 * inference can reach; anything the platform adds (HTTP, queue, batching,
 * encoding) shows as the distance from it.
 */
import * as ort from 'onnxruntime-node';

export interface OrtRate {
  batch: number;
  runs: number;
  msPerRun: number;
  rowsPerSecond: number;
}

export async function measureOrt(
  session: ort.InferenceSession,
  input: { name: string; width: number },
  batch: number,
  seconds: number,
): Promise<OrtRate> {
  const x = new ort.Tensor('float32', Float32Array.from({ length: batch * input.width }, () => Math.random() * 2 - 1), [batch, input.width]);
  const feeds = { [input.name]: x };
  // Warm-up: the first runs of a shape allocate and plan.
  const warm = performance.now() + Math.min(200, seconds * 200);
  while (performance.now() < warm) await session.run(feeds);
  let runs = 0;
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  while (performance.now() < deadline) {
    await session.run(feeds);
    runs++;
  }
  const ms = (performance.now() - t0) / runs;
  return { batch, runs, msPerRun: ms, rowsPerSecond: (batch * 1000) / ms };
}
