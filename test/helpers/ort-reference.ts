import path from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Datatype } from '@infer/contract';
import { toNested, type TensorData } from '@infer/tensors';
import { SHIPPED_MODELS } from './platform.js';

/** `<root>/<name>/<version>/model.onnx`, as the model repository lays it out. */
export function modelFile(name: string, version: string, root = SHIPPED_MODELS): string {
  return path.join(root, name, version, 'model.onnx');
}

/**
 * ONNX Runtime run directly on a model file, with sessions of its own (not
 * the platform's), so a test compares what the platform answers with what
 * the model itself computes. Sessions are made on first use; `close()`
 * releases them.
 */
export class OrtReference {
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();

  private session(file: string): Promise<ort.InferenceSession> {
    let s = this.sessions.get(file);
    if (!s) this.sessions.set(file, (s = ort.InferenceSession.create(file)));
    return s;
  }

  /** One float32 input tensor (batch dimension included in `dims`) → every output's flat data. */
  async runFp32(file: string, input: string, data: Float32Array, dims: readonly number[]): Promise<Record<string, Float32Array>> {
    const session = await this.session(file);
    const results = await session.run({ [input]: new ort.Tensor('float32', data, dims) });
    const out: Record<string, Float32Array> = {};
    for (const [name, tensor] of Object.entries(results)) out[name] = tensor.data as Float32Array;
    return out;
  }

  async close(): Promise<void> {
    const sessions = await Promise.all(this.sessions.values());
    this.sessions.clear();
    await Promise.allSettled(sessions.map((s) => s.release()));
  }
}

/** Deterministic FP32 values in [lo, hi), the same on every run. */
export function seededFloats(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    // xorshift32
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = lo + (x / 4294967296) * (hi - lo);
  }
  return out;
}

export type TensorForm = 'nested' | 'data' | 'b64';
export const TENSOR_FORMS: readonly TensorForm[] = ['nested', 'data', 'b64'];

/**
 * One instance in each of the three request forms of docs/api.md: a nested JSON
 * array, `{datatype, shape, data}` and `{datatype, shape, b64}` (the typed
 * array's bytes, little-endian on every platform Node runs tests on).
 */
export function inForm(form: TensorForm, datatype: Exclude<Datatype, 'BYTES'>, shape: number[], data: TensorData): unknown {
  switch (form) {
    case 'nested':
      return toNested(data, shape, datatype === 'BOOL');
    case 'data':
      return {
        datatype,
        shape,
        data: Array.from(data as ArrayLike<number | bigint>, (v) => (datatype === 'BOOL' ? v !== 0 : typeof v === 'bigint' ? Number(v) : v)),
      };
    case 'b64':
      return { datatype, shape, b64: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64') };
  }
}
