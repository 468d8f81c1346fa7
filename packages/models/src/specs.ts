import { DATATYPE_OF_ORT, type Datatype, type OrtTensorType, type SharedDim, type TensorSpec } from '@infer/contract';

/** What onnxruntime-node's `inputMetadata`/`outputMetadata` report for one value. */
export interface OrtValueMetadata {
  name: string;
  isTensor: boolean;
  type?: string;
  shape?: ReadonlyArray<number | string>;
}

export interface DerivedSpecs {
  /** True when the first dimension of every input and every output is dynamic, and the inputs' is one axis. */
  batched: boolean;
  /** Why a model whose first dimensions are all dynamic is not batched (the inputs name them differently). */
  unbatchedBecause?: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** Dimensions the model names alike in several places of its inputs: one value each, per job (see SharedDim). */
  sharedDims: SharedDim[];
}

/**
 * Dimension names exporters make up, one per input, where the model's author
 * named none: they say nothing of which axes are one. tf2onnx's `unk__12`,
 * paddle2onnx's `p2o.DynamicDimension.0`, torch.onnx.export's
 * `<input>_dynamic_axes_1` (dynamic_axes given as a list), and ''.
 */
const GENERATED_DIM = /^(?:|unk__\d+|p2o\.DynamicDimension\.\d+|.*_dynamic_axes_\d+)$/;

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
 * when every input and output has a dynamic first dimension (docs/api.md)
 * and no two inputs name theirs differently, unless its config says
 * `max_batch_size: 0` or `batched: false` (`unbatched`); its specs then
 * leave that dimension out. Otherwise the specs are the full shapes and the
 * model runs one job at a time. Inputs `a[N,2]` and `table[V,2]` need not
 * share an axis: stacking every job's table along V would give each job a
 * run over the others' tables too. A config that says `batched: true`
 * (`batchAsked`) says they do (an exporter that names the one batch axis
 * differently on each input).
 */
export function deriveSpecs(
  inputs: readonly OrtValueMetadata[],
  outputs: readonly OrtValueMetadata[],
  options: { unbatched?: boolean; batchAsked?: boolean } = {},
): DerivedSpecs {
  const all = [...inputs, ...outputs];
  const full = (m: OrtValueMetadata): number[] => (m.shape ?? []).map(toDim);
  const dynamicFirst = all.length > 0 && all.every((m) => (m.shape?.length ?? 0) >= 1 && toDim(m.shape![0]!) === -1);
  // Outputs' names say nothing (exporters name the batch axis of an output apart from its inputs'); a dimension
  // with no name (-1), or one an exporter made up for each input, may be any axis.
  const named = inputs.filter((m) => typeof m.shape?.[0] === 'string' && !GENERATED_DIM.test(m.shape[0]));
  const axes = new Set(named.map((m) => m.shape![0] as string));
  const unbatchedBecause =
    dynamicFirst && !options.unbatched && !options.batchAsked && axes.size > 1
      ? `its inputs name their first dimensions differently (${named.map((m) => `${m.name}: ${String(m.shape![0])}`).join(', ')}), so they may not be one batch axis: it runs one job at a time. If they are, say "batched": true in its config.json`
      : undefined;
  if (options.batchAsked && !dynamicFirst) {
    const fixed = all.find((m) => (m.shape?.length ?? 0) < 1 || toDim(m.shape![0]!) !== -1)!;
    throw new Error(`its config.json says "batched": true, but "${fixed.name}" has no dynamic first dimension to stack jobs along`);
  }
  const batched = !options.unbatched && dynamicFirst && unbatchedBecause === undefined;
  const spec = (m: OrtValueMetadata): TensorSpec => ({
    name: m.name,
    datatype: toDatatype(m),
    shape: batched ? full(m).slice(1) : full(m),
  });
  const outputSpecs = outputs.map(spec);
  // A string output would run and then fail every job when its result is stored: refuse the model at load instead.
  const strings = outputSpecs.find((o) => o.datatype === 'BYTES');
  if (strings) throw new Error(`output "${strings.name}" is a string tensor (BYTES), which the platform cannot return`);
  // Tensors travel by name in plain objects (ONNX Runtime's own binding, the queue's JSON, its schemas), where
  // this name sets the object's prototype instead of adding an entry: no job could pass. Refused at load, said.
  // Dimension names the model's author gave (not an exporter's made-up ones), in more than one place of the inputs.
  const places = new Map<string, SharedDim['at']>();
  inputs.forEach((m, input) => {
    const dims = m.shape ?? [];
    for (let axis = batched ? 1 : 0; axis < dims.length; axis++) {
      const d = dims[axis];
      if (typeof d !== 'string' || GENERATED_DIM.test(d)) continue;
      const at = places.get(d) ?? [];
      at.push({ input, axis: batched ? axis - 1 : axis });
      places.set(d, at);
    }
  });
  const sharedDims = [...places].filter(([, at]) => at.length > 1).map(([name, at]) => ({ name, at }));
  const proto = all.find((m) => m.name === '__proto__');
  if (proto) throw new Error(`${inputs.includes(proto) ? 'an input' : 'an output'} is named "__proto__", which JavaScript objects cannot hold as a name: rename it in the model`);
  return { batched, ...(unbatchedBecause ? { unbatchedBecause } : {}), inputs: inputs.map(spec), outputs: outputSpecs, sharedDims };
}
