/**
 * Tiny helpers for assembling ONNX models with the protobufjs-generated
 * classes from `onnx-proto`. Only what scripts/build-models.ts needs: typed
 * value infos (fixed or symbolic dims), raw-data initializers (including the
 * INT8/UINT8 weights and zero points of a quantised model), nodes with
 * integer attributes, and a deterministic model encoder.
 */
// onnx-proto is CommonJS and assigns `module.exports = $root`, so Node's ESM
// loader cannot see a named `onnx` export; take the default (module.exports)
// and pull the namespace off it. The type-only import gives us the typings.
import onnxProto from 'onnx-proto';
import type { onnx } from 'onnx-proto';

const { AttributeProto, ModelProto, TensorProto } = onnxProto.onnx;

/** ONNX element types used by this project (values of TensorProto.DataType). */
export const ElemType = {
  FLOAT: TensorProto.DataType.FLOAT,
  INT64: TensorProto.DataType.INT64,
  BOOL: TensorProto.DataType.BOOL,
  DOUBLE: TensorProto.DataType.DOUBLE,
  INT8: TensorProto.DataType.INT8,
  UINT8: TensorProto.DataType.UINT8,
  INT32: TensorProto.DataType.INT32,
} as const;
export type ElemType = (typeof ElemType)[keyof typeof ElemType];

/** A dimension: a number is fixed, a string is a symbolic (dynamic) dim name. */
export type Dim = number | string;

/** Graph input/output declaration. `dims: []` declares a scalar (rank 0). */
export function valueInfo(name: string, elemType: ElemType, dims: readonly Dim[]): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        // Always emit `shape`, even when empty: an absent shape means "unknown
        // rank", whereas an empty one means "scalar".
        shape: {
          dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })),
        },
      },
    },
  };
}

/** Bytes per element and a little-endian writer for each supported type. */
const RAW_CODECS: Record<ElemType, { size: number; write: (view: DataView, offset: number, v: number) => void }> = {
  [ElemType.FLOAT]: { size: 4, write: (view, o, v) => view.setFloat32(o, v, true) },
  [ElemType.DOUBLE]: { size: 8, write: (view, o, v) => view.setFloat64(o, v, true) },
  [ElemType.INT64]: { size: 8, write: (view, o, v) => view.setBigInt64(o, BigInt(v), true) },
  [ElemType.BOOL]: { size: 1, write: (view, o, v) => view.setUint8(o, v ? 1 : 0) },
  // setInt8/setUint8/setInt32 wrap out-of-range values silently; the
  // quantiser clamps before it gets here, and `initializer` checks again.
  [ElemType.INT8]: { size: 1, write: (view, o, v) => view.setInt8(o, v) },
  [ElemType.UINT8]: { size: 1, write: (view, o, v) => view.setUint8(o, v) },
  [ElemType.INT32]: { size: 4, write: (view, o, v) => view.setInt32(o, v, true) },
};

/** The integer range of each integer type, so a bad value throws instead of wrapping. */
const INT_RANGES: Partial<Record<ElemType, readonly [number, number]>> = {
  [ElemType.INT8]: [-128, 127],
  [ElemType.UINT8]: [0, 255],
  [ElemType.INT32]: [-(2 ** 31), 2 ** 31 - 1],
};

/**
 * An initializer stored as `raw_data`. ONNX mandates little-endian raw data,
 * so values go through a DataView instead of reinterpreting a typed array's
 * (host-endian) buffer; that also keeps the bytes identical on every host.
 */
export function initializer(
  name: string,
  elemType: ElemType,
  dims: readonly number[],
  values: ArrayLike<number>,
): onnx.ITensorProto {
  const expected = dims.reduce((n, d) => n * d, 1);
  if (values.length !== expected) {
    throw new Error(`initializer ${name}: ${values.length} values for dims [${dims.join(',')}]`);
  }
  const codec = RAW_CODECS[elemType];
  const range = INT_RANGES[elemType];
  if (range) {
    for (let i = 0; i < values.length; i++) {
      const v = values[i] as number;
      if (!Number.isInteger(v) || v < range[0] || v > range[1]) {
        throw new Error(`initializer ${name}: value ${v} at ${i} is not an integer in [${range[0]}, ${range[1]}]`);
      }
    }
  }
  const rawData = new Uint8Array(values.length * codec.size);
  const view = new DataView(rawData.buffer);
  for (let i = 0; i < values.length; i++) codec.write(view, i * codec.size, values[i] as number);
  return { name, dataType: elemType, dims: [...dims], rawData };
}

/** A graph node; attributes are limited to single ints, all we need. */
export function node(
  opType: string,
  inputs: readonly string[],
  outputs: readonly string[],
  intAttrs: Readonly<Record<string, number>> = {},
): onnx.INodeProto {
  return {
    opType,
    // Name nodes after their first output: unique in a graph, and stable.
    name: `${opType}_${outputs[0] ?? ''}`,
    input: [...inputs],
    output: [...outputs],
    attribute: Object.entries(intAttrs).map(([name, i]) => ({
      name,
      type: AttributeProto.AttributeType.INT,
      i,
    })),
  };
}

export interface GraphSpec {
  name: string;
  inputs: onnx.IValueInfoProto[];
  outputs: onnx.IValueInfoProto[];
  nodes: onnx.INodeProto[];
  initializers?: onnx.ITensorProto[];
}

/** ai.onnx opset and IR version every generated model targets. */
export const OPSET = 13;
export const IR_VERSION = 8;

/**
 * Serialise a graph into an ONNX model. protobufjs writes fields in
 * declaration order and we put no timestamps or random ids in, so the same
 * spec always yields the same bytes.
 */
export function encodeModel(graph: GraphSpec): Uint8Array {
  const model = ModelProto.create({
    irVersion: IR_VERSION,
    producerName: 'infer-platform/build-models',
    producerVersion: '1',
    opsetImport: [{ domain: '', version: OPSET }],
    graph: {
      name: graph.name,
      input: graph.inputs,
      output: graph.outputs,
      node: graph.nodes,
      initializer: graph.initializers ?? [],
    },
  });
  return ModelProto.encode(model).finish();
}
