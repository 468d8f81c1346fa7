import type { Datatype } from './datatypes.js';

/**
 * A model input or output as clients see it. For a batched model `shape` is
 * the shape of ONE instance (the batch dimension left out); for a model that
 * is not batched it is the full tensor shape. -1 marks a variable dimension.
 */
export interface TensorSpec {
  name: string;
  datatype: Datatype;
  shape: number[];
}

/**
 * A dimension the model names alike (ONNX's `dim_param`) in more than one
 * place of its inputs, as a transformer's `input_ids[batch, sequence]` and
 * `attention_mask[batch, sequence]` do: ONNX gives a name one value, so a
 * job must give them one length. Each place is an input (its index in the
 * model's inputs) and an axis of its spec's shape (the batch axis left out).
 */
export interface SharedDim {
  name: string;
  at: Array<{ input: number; axis: number }>;
}

/** The public description of a model, as `GET /v1/models/{name}` returns it. */
export interface ModelInfo {
  name: string;
  versions: string[];
  default_version: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** 0 when the model is not batched (Triton's convention). */
  max_batch_size: number;
  max_delay_ms: number;
}

/**
 * A tensor in the platform's internal, canonical form: raw little-endian
 * bytes in base64. The gateway turns each of the three request forms into
 * this, so the queue carries no JSON number arrays and the worker decodes
 * straight into a typed array.
 */
export interface EncodedTensor {
  datatype: Datatype;
  shape: number[];
  b64: string;
}
