import { ElemType, encodeModel, initializer, node, valueInfo } from '../../scripts/lib/onnx-builder.js';

/**
 * Models whose runs take a real while, built in the tests' own repositories:
 * for faults that need work in flight (a signal mid-run, a cancel of a
 * running job, two micro-batches at once). Real ONNX Runtime runs, no
 * sleeps standing in for them.
 */

/**
 * The MLP's shape (features[N,64] → probabilities[N,4]) with 512 layers of
 * 256×256: ~100 ms a run of 256 rows on two cores. Small on disk (one weight,
 * used by every layer).
 */
export function deepMlpModel(): Uint8Array {
  const width = 256;
  const layers = 512;
  const weights = (rows: number, cols: number) => Float32Array.from({ length: rows * cols }, (_, i) => (((i * 7919) % 1000) / 1000 - 0.5) / Math.sqrt(rows));
  const nodes = [node('MatMul', ['features', 'w_in'], ['h0'])];
  for (let k = 0; k < layers; k++) nodes.push(node('MatMul', [`h${k}`, 'w'], [`m${k}`]), node('Tanh', [`m${k}`], [`h${k + 1}`]));
  nodes.push(node('MatMul', [`h${layers}`, 'w_out'], ['logits']), node('Softmax', ['logits'], ['probabilities'], { axis: -1 }));
  return encodeModel({
    name: 'slow',
    inputs: [valueInfo('features', ElemType.FLOAT, ['batch', 64])],
    outputs: [valueInfo('probabilities', ElemType.FLOAT, ['batch', 4])],
    nodes,
    initializers: [
      initializer('w_in', ElemType.FLOAT, [64, width], weights(64, width)),
      initializer('w', ElemType.FLOAT, [width, width], weights(width, width)),
      initializer('w_out', ElemType.FLOAT, [width, 4], weights(width, 4)),
    ],
  });
}

/**
 * x[N, len] → the outer product x·xᵀ squared `k` times → y[N, 1]: a run whose
 * time grows with len³ and linearly with N, chosen by the input sent (len
 * 1024: about a second for a few rows on two cores). Zeros in, zeros out.
 */
export function cubicModel(k = 8): Uint8Array {
  const nodes = [node('Unsqueeze', ['x', 'ax2'], ['a']), node('Unsqueeze', ['x', 'ax1'], ['b']), node('MatMul', ['a', 'b'], ['m0'])];
  for (let i = 1; i <= k; i++) nodes.push(node('MatMul', [`m${i - 1}`, `m${i - 1}`], [`m${i}`]));
  nodes.push(node('ReduceSum', [`m${k}`, 'ax2'], ['r'], { keepdims: 0 }), node('ReduceSum', ['r', 'ax1'], ['y'], { keepdims: 1 }));
  return encodeModel({
    name: 'cubic',
    inputs: [valueInfo('x', ElemType.FLOAT, ['batch', 'len'])],
    outputs: [valueInfo('y', ElemType.FLOAT, ['batch', 1])],
    initializers: [initializer('ax1', ElemType.INT64, [1], [1]), initializer('ax2', ElemType.INT64, [1], [2])],
    nodes,
  });
}
