import onnxProto from 'onnx-proto';
import type { onnx } from 'onnx-proto';
import { encodeModel, initializer, node, valueInfo, type Dim } from '../../scripts/lib/onnx-builder.js';

/**
 * Small ONNX graphs for the tensor tests, built on the spot (never
 * the repository's ./models).
 */

const { TensorProto } = onnxProto.onnx;

/** Every ONNX element type by its name (TensorProto.DataType), beyond the few onnx-builder names. */
export const DT = TensorProto.DataType;

/** A graph input or output of any element type (`dims` undefined: no shape at all, rank unknown). */
export function tensorInfo(name: string, elemType: number, dims: readonly Dim[] | undefined): onnx.IValueInfoProto {
  if (dims) return valueInfo(name, elemType as never, dims);
  return { name, type: { tensorType: { elemType } } };
}

/** y[N,1] = a[N,1] / b[N,1] on INT32: integer division, as a model dividing counts would. */
export function int32DivModel(): Uint8Array {
  return encodeModel({
    name: 'idiv',
    inputs: [tensorInfo('a', DT.INT32, ['N', 1]), tensorInfo('b', DT.INT32, ['N', 1])],
    outputs: [tensorInfo('y', DT.INT32, ['N', 1])],
    nodes: [node('Div', ['a', 'b'], ['y'])],
  });
}

/** Batched scalars: x[N] (INT64) → y[N] = x * 2 (INT64), flag[N] = x > 0 (BOOL): each instance is a bare value. */
export function scalarIntModel(): Uint8Array {
  return encodeModel({
    name: 'scalarint',
    inputs: [tensorInfo('x', DT.INT64, ['N'])],
    outputs: [tensorInfo('y', DT.INT64, ['N']), tensorInfo('flag', DT.BOOL, ['N'])],
    nodes: [node('Mul', ['x', 'two'], ['y']), node('Greater', ['x', 'zero'], ['flag'])],
    initializers: [initializer('two', DT.INT64 as never, [], [2]), initializer('zero', DT.INT64 as never, [], [0])],
  });
}

/** y[N, k] = x[N, 1] + r[k], r the ramp i / 7: k FP32 values a job whatever its input, values that print long (~9 characters). */
export function wideOutputModel(k: number): Uint8Array {
  return encodeModel({
    name: 'wide',
    inputs: [tensorInfo('x', DT.FLOAT, ['N', 1])],
    outputs: [tensorInfo('y', DT.FLOAT, ['N', k])],
    nodes: [node('Add', ['x', 'r'], ['y'])],
    initializers: [initializer('r', DT.FLOAT as never, [1, k], Array.from({ length: k }, (_, i) => i / 7))],
  });
}
