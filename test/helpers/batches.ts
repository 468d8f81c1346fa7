import http from 'node:http';
import { expect } from 'chai';
import type { Batch, BatchResultLine } from '@infer/contract';
import { runModel, type ModelVersion } from '@infer/models';
import { TEST_KEY, type TestPlatform } from './platform.js';
import { waitUntil } from './wait.js';

/** Deterministic features for row `i` of the MLP (64 values in [-1, 1)). */
export function mlpFeatures(i: number): number[] {
  const out = new Array<number>(64);
  let x = (i + 1) * 2654435761;
  for (let k = 0; k < 64; k++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    out[k] = Math.fround(x / 1073741824 - 1);
  }
  return out;
}

/** The `b64` form of FP32 values. */
export function b64Fp32(values: readonly number[], shape: number[] = [values.length]): { datatype: 'FP32'; shape: number[]; b64: string } {
  return { datatype: 'FP32', shape, b64: Buffer.from(Float32Array.from(values).buffer).toString('base64') };
}

export function toNdjson(items: readonly unknown[]): string {
  return items.map((i) => (typeof i === 'string' ? i : JSON.stringify(i))).join('\n') + '\n';
}

export async function uploadNdjson(p: TestPlatform, body: string, query = 'model=mlp', key?: string): Promise<Response> {
  return p.api(`/v1/batches?${query}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson' },
    body,
    ...(key ? { key } : {}),
  });
}

/**
 * An NDJSON upload the test sends piece by piece (`req.write`, then `req.end`), chunked, through Node's
 * http client: for what happens while a body is still arriving. `answer` resolves with the gateway's
 * status and body, or status -1 and the error's message when the connection fails.
 */
export function streamedUpload(p: TestPlatform, query = 'model=mlp', key = TEST_KEY): { req: http.ClientRequest; answer: Promise<{ status: number; body: string }> } {
  const url = new URL(p.baseUrl);
  const req = http.request({
    host: url.hostname,
    port: url.port,
    path: `/v1/batches?${query}`,
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-ndjson', 'transfer-encoding': 'chunked' },
  });
  const answer = new Promise<{ status: number; body: string }>((resolve) => {
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', (err) => resolve({ status: -1, body: err.message }));
  });
  return { req, answer };
}

/** POST a batch and return the 202's Batch (throws on anything else). */
export async function submitBatch(p: TestPlatform, request: { json: unknown } | { ndjson: string; query?: string }): Promise<Batch> {
  const res =
    'json' in request
      ? await p.api('/v1/batches', { method: 'POST', body: JSON.stringify(request.json) })
      : await uploadNdjson(p, request.ndjson, request.query);
  if (res.status !== 202) throw new Error(`expected 202, got ${res.status}: ${await res.text()}`);
  return (await res.json()) as Batch;
}

export async function getBatch(p: TestPlatform, id: string): Promise<Batch> {
  const res = await p.api(`/v1/batches/${id}`);
  if (res.status !== 200) throw new Error(`GET batch: ${res.status} ${await res.text()}`);
  return (await res.json()) as Batch;
}

export async function waitForBatchEnd(p: TestPlatform, id: string, timeoutMs = 20_000): Promise<Batch> {
  return waitUntil(
    async () => {
      const b = await getBatch(p, id);
      return b.status === 'completed' || b.status === 'canceled' ? b : null;
    },
    timeoutMs,
    `batch ${id} to end`,
  );
}

export async function readResults(p: TestPlatform, id: string): Promise<BatchResultLine[]> {
  const res = await p.api(`/v1/batches/${id}/results`);
  if (res.status !== 200) throw new Error(`results: ${res.status} ${await res.text()}`);
  const text = await res.text();
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as BatchResultLine);
}

/** ONNX Runtime run directly on rows of one fixed-shape FP32 input, one Float32Array of the first output per row. */
export async function directOrt(model: ModelVersion, rows: readonly number[][]): Promise<Float32Array[]> {
  const spec = model.inputs[0]!;
  const per = rows[0]!.length;
  const data = new Float32Array(rows.length * per);
  rows.forEach((r, i) => data.set(r, i * per));
  const { outputs } = await runModel(model, { [spec.name]: { datatype: 'FP32', shape: [rows.length, ...spec.shape], data } });
  const out = outputs[model.outputs[0]!.name]!;
  const each = out.data.length / rows.length;
  return rows.map((_, i) => (out.data as Float32Array).slice(i * each, (i + 1) * each));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** An ended batch's results file against its counts: one line per item, indexes 0..n-1 in order, the statuses adding up to the counts. */
export function expectResultsWhole(lines: BatchResultLine[], batch: Batch): void {
  const c = batch.request_counts;
  expect(c.total, 'total = succeeded + failed + canceled').to.equal(c.succeeded + c.failed + c.canceled);
  expect(lines.length, 'one line per item').to.equal(c.total);
  lines.forEach((l, i) => {
    if (l.index !== i) expect.fail(`line ${i} has index ${l.index}`);
  });
  const by = (s: string) => lines.filter((l) => l.status === s).length;
  expect({ succeeded: by('succeeded'), failed: by('failed'), canceled: by('canceled') }).to.deep.equal({ succeeded: c.succeeded, failed: c.failed, canceled: c.canceled });
}
