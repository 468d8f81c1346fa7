import * as ort from 'onnxruntime-node';
import { DATATYPE_OF_ORT, ORT_TYPE_OF, type Datatype, type OrtTensorType } from '@infer/contract';
import type { DecodedTensor, TensorData } from '@infer/tensors';
import type { ModelVersion } from './model-repository.js';

export interface RunResult {
  outputs: Record<string, DecodedTensor>;
  inferenceMs: number;
}

/**
 * One `InferenceSession.run` over already-stacked (or, for a model that is
 * not batched, whole) tensors. onnxruntime-node (1.30) runs it on the
 * calling thread (its promise only defers the call to the next turn), so
 * the event loop waits for each run: one run per micro-batch, not per job,
 * is what keeps a worker's own I/O (taking and finishing envelopes) going.
 */
export async function runModel(model: ModelVersion, feeds: Record<string, DecodedTensor>): Promise<RunResult> {
  const ortFeeds: Record<string, ort.Tensor> = {};
  for (const [name, t] of Object.entries(feeds)) {
    ortFeeds[name] = new ort.Tensor(ORT_TYPE_OF[t.datatype] as 'float32', t.data as Float32Array, t.shape);
  }
  const started = performance.now();
  const results = await model.session.run(ortFeeds);
  const inferenceMs = performance.now() - started;
  const outputs: Record<string, DecodedTensor> = {};
  for (const spec of model.outputs) {
    const tensor = results[spec.name];
    if (!tensor) throw new Error(`model ${model.name} v${model.version} returned no output "${spec.name}"`);
    outputs[spec.name] = {
      datatype: DATATYPE_OF_ORT[tensor.type as OrtTensorType] as Exclude<Datatype, 'BYTES'>,
      shape: [...tensor.dims],
      data: tensor.data as TensorData,
    };
  }
  return { outputs, inferenceMs };
}
