import type { JobError } from '@infer/contract';
import { runModel, type ModelVersion } from '@infer/models';
import { instanceSlice, shapeKey, stack, toNested, type DecodedTensor } from '@infer/tensors';

/** One job's inputs, decoded and checked against the model's specs. */
export type InstanceInputs = Record<string, DecodedTensor>;

export type InstanceResult =
  | { ok: true; output: string; inferenceMs: number; batchSize: number }
  | { ok: false; error: JobError; inferenceMs: number; batchSize: number };

/**
 * Run a batch of instances through the model and return one result per
 * instance, in order.
 *
 * A batched model gets instances grouped by shape (instances whose variable
 * dimensions differ are never stacked together: API.md) and stacked along a
 * new first dimension, one `session.run` per group. A model that is not
 * batched runs each job's full tensors on their own.
 * A failed run fails only the instances of that run.
 */
export async function runBatch(model: ModelVersion, instances: readonly InstanceInputs[]): Promise<InstanceResult[]> {
  const results: InstanceResult[] = new Array(instances.length);
  for (const group of groupIndices(model, instances)) {
    const feeds: Record<string, DecodedTensor> = {};
    for (const spec of model.inputs) {
      const parts = group.map((i) => instances[i]![spec.name]!);
      feeds[spec.name] = model.batched ? stack(parts) : parts[0]!;
    }
    try {
      const { outputs, inferenceMs } = await runModel(model, feeds);
      group.forEach((instanceIndex, k) => {
        const rendered: Record<string, unknown> = {};
        for (const spec of model.outputs) {
          const t = outputs[spec.name]!;
          const bool = t.datatype === 'BOOL';
          if (model.batched) {
            const { offset, shape } = instanceSlice(t.data, t.shape, k);
            rendered[spec.name] = toNested(t.data, shape, bool, offset);
          } else {
            rendered[spec.name] = toNested(t.data, t.shape, bool);
          }
        }
        results[instanceIndex] = { ok: true, output: JSON.stringify(rendered), inferenceMs, batchSize: group.length };
      });
    } catch (err) {
      const error: JobError = { code: 'inference_failed', message: `ONNX Runtime failed: ${(err as Error).message}` };
      for (const i of group) results[i] = { ok: false, error, inferenceMs: 0, batchSize: group.length };
    }
  }
  return results;
}

/** Indices of instances that may share one run, in arrival order. */
function groupIndices(model: ModelVersion, instances: readonly InstanceInputs[]): number[][] {
  if (!model.batched) return instances.map((_, i) => [i]);
  const groups = new Map<string, number[]>();
  instances.forEach((inst, i) => {
    const key = shapeKey(model.inputs.map((s) => inst[s.name]!));
    let g = groups.get(key);
    if (!g) groups.set(key, (g = []));
    g.push(i);
  });
  return [...groups.values()];
}
