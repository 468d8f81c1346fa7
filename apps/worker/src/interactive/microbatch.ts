import { spanTime } from '@infer/tracing';
import type { JobError } from '@infer/contract';
import { runModel, type ModelVersion, type RunWatch } from '@infer/models';
import type { Datatype } from '@infer/contract';
import { fromBytes, instanceSlice, shapeKey, stack, tensorBuffers, toBytes, type DecodedTensor, type TensorBytes } from '@infer/tensors';
import type { RecordOutput } from '@infer/job-store';
import { runIsolating } from '../poison-isolation.js';

/** One input of one instance: its shape and its little-endian bytes, a view of its envelope's (any alignment). */
export type InstanceInput = TensorBytes;

/** One instance's inputs, in the model's input order. */
export type InstanceInputs = readonly InstanceInput[];

export type InstanceResult =
  | { ok: true; outputs: RecordOutput[]; inferenceMs: number; batchSize: number }
  | { ok: false; error: JobError; inferenceMs: number; batchSize: number };

/** One `session.run` of a micro-batch: how many instances it stacked and how long it took. */
export interface Run {
  size: number;
  ms: number;
  /** When it ended (epoch ms, sub-millisecond): with `ms`, where a trace places its InferenceSession.run span. */
  endedAt?: number;
}

/**
 * Run a micro-batch of instances through the model and return one result
 * per instance, in order, and the runs it took.
 *
 * A batched model gets its instances grouped by shape (instances whose
 * variable dimensions differ are never stacked together) and stacked along
 * a new first dimension: one `session.run` per group. When a group's inputs
 * already lie back to back in one buffer (a whole envelope, as the gateway
 * packed it), the stacked tensor is a view of that buffer, not a copy. A
 * model that is not batched runs each instance's full tensors on their own.
 *
 * A run that fails is bisected (runIsolating): one poison instance (an id
 * past an embedding table, say: valid input that still makes ONNX Runtime
 * throw) fails alone, with ONNX Runtime's message, and the instances stacked
 * with it succeed, each with its output from a smaller run.
 *
 * `watch` is told of each `session.run` (runModel).
 */
export async function runMicrobatch(model: ModelVersion, instances: readonly InstanceInputs[], watch?: RunWatch): Promise<{ results: InstanceResult[]; runs: Run[] }> {
  const results: InstanceResult[] = new Array(instances.length);
  const runs: Run[] = [];
  for (const group of groupIndices(model, instances)) {
    await runIsolating(group, (g) => runGroup(model, instances, g, results, runs, watch), (i, error) => {
      results[i] = { ok: false, error, inferenceMs: 0, batchSize: 1 };
    });
  }
  return { results, runs };
}

/** One `session.run` of instances of one shape; their results, or a throw when ONNX Runtime throws. */
async function runGroup(
  model: ModelVersion,
  instances: readonly InstanceInputs[],
  group: readonly number[],
  results: InstanceResult[],
  runs: Run[],
  watch?: RunWatch,
): Promise<void> {
  const feeds: Record<string, DecodedTensor> = {};
  model.inputs.forEach((spec, k) => {
    const parts = group.map((i) => instances[i]![k]!);
    feeds[spec.name] = model.batched ? stack(parts, tensorBuffers) : tensorOf(parts[0]!.datatype, parts[0]!.shape, parts[0]!.bytes);
  });
  let ran: Awaited<ReturnType<typeof runModel>>;
  try {
    ran = await runModel(model, feeds, watch);
  } finally {
    // The run is over (ONNX Runtime read the inputs during it; its outputs are its own): a stacked copy
    // can be used again. Views of the envelope's bytes are not the pool's, and stay as they are.
    for (const t of Object.values(feeds)) tensorBuffers.release(t.data);
  }
  const { outputs, inferenceMs } = ran;
  runs.push({ size: group.length, ms: inferenceMs, endedAt: spanTime() });
  group.forEach((instanceIndex, j) => {
    const out: RecordOutput[] = model.outputs.map((spec) => {
      const t = outputs[spec.name]!;
      if (!model.batched) return { name: spec.name, datatype: t.datatype, shape: t.shape, bytes: toBytes(t.data) };
      const { offset, shape } = instanceSlice(t.data, t.shape, j);
      const per = t.shape[0] === 0 ? 0 : t.data.length / t.shape[0]!;
      return { name: spec.name, datatype: t.datatype, shape, bytes: toBytes(t.data.subarray(offset, offset + per)) };
    });
    results[instanceIndex] = { ok: true, outputs: out, inferenceMs, batchSize: group.length };
  });
}

/** Bytes as the typed array ONNX Runtime takes (a view when aligned, else one copy: fromBytes). */
function tensorOf(datatype: Exclude<Datatype, 'BYTES'>, shape: number[], bytes: Uint8Array): DecodedTensor {
  return { datatype, shape, data: fromBytes(datatype, bytes) };
}

/** Indices of instances that may share one run, in arrival order. */
function groupIndices(model: ModelVersion, instances: readonly InstanceInputs[]): number[][] {
  if (!model.batched) return instances.map((_, i) => [i]);
  const groups = new Map<string, number[]>();
  instances.forEach((inst, i) => {
    const key = shapeKey(inst);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = []));
    g.push(i);
  });
  return [...groups.values()];
}
