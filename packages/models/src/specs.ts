import { DATATYPE_OF_ORT, type Datatype, type OrtTensorType, type TensorSpec } from '@infer/contract';

/** What onnxruntime-node's `inputMetadata`/`outputMetadata` report for one value. */
export interface OrtValueMetadata {
  name: string;
  isTensor: boolean;
  type?: string;
  shape?: ReadonlyArray<number | string>;
}

export interface DerivedSpecs {
  /** True when the first dimension of every input and every output is dynamic. */
  batched: boolean;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

/** A symbolic dimension ("batch", "p2o.DynamicDimension.0") or an unknown one is variable. */
function toDim(d: number | string): number {
  return typeof d === 'number' && d >= 0 ? d : -1;
}

function toDatatype(meta: OrtValueMetadata): Datatype {
  const dt = DATATYPE_OF_ORT[meta.type as OrtTensorType];
  if (!meta.isTensor || !dt) throw new Error(`value "${meta.name}" has unsupported type ${meta.type ?? 'non-tensor'}`);
  return dt;
}

/**
 * Derive the public TensorSpecs from the model itself. A model is batched
 * exactly when every input and output has a dynamic first dimension (docs/api.md),
 * unless its config says `max_batch_size: 0` (`unbatched`); its specs then
 * leave that dimension out. Otherwise the specs are the full shapes and the
 * model runs one job at a time.
 */
export function deriveSpecs(inputs: readonly OrtValueMetadata[], outputs: readonly OrtValueMetadata[], options: { unbatched?: boolean } = {}): DerivedSpecs {
  const all = [...inputs, ...outputs];
  const full = (m: OrtValueMetadata): number[] => (m.shape ?? []).map(toDim);
  // (Symbolic names say nothing: exporters name the same batch axis differently on inputs and outputs.)
  const batched = !options.unbatched && all.length > 0 && all.every((m) => (m.shape?.length ?? 0) >= 1 && toDim(m.shape![0]!) === -1);
  const spec = (m: OrtValueMetadata): TensorSpec => ({
    name: m.name,
    datatype: toDatatype(m),
    shape: batched ? full(m).slice(1) : full(m),
  });
  const outputSpecs = outputs.map(spec);
  // A string output would run and then fail every job when its result is stored: refuse the model at load instead.
  const strings = outputSpecs.find((o) => o.datatype === 'BYTES');
  if (strings) throw new Error(`output "${strings.name}" is a string tensor (BYTES), which the platform cannot return`);
  return { batched, inputs: inputs.map(spec), outputs: outputSpecs };
}
