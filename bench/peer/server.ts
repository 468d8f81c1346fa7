/**
 * The direct peer: what a team would write instead of adopting the platform.
 * A plain `node:http` server (no Express, no queue, no auth, no job record)
 * that takes the platform's `POST /v1/jobs` body, runs the model at batch 1
 * in this process, and answers 200 with `{"output": {name: nested array}}`.
 * It is the baseline the platform's interactive figures are held against, so
 * it has to be an honest, fast one: every request goes straight from the
 * socket to `InferenceSession.run` and back.
 *
 * Env: PEER_MODEL_FILE (path to model.onnx), PEER_MODEL_NAME (the `model` a
 * body must name), PEER_PORT, PEER_HOST (127.0.0.1); and the ONNX Runtime
 * session options, PEER_INTRA_OP_THREADS ("default" or a number) and
 * PEER_ALLOW_SPINNING ("0" or "1"); PEER_LIFT_B64 ("1", or "0" to compare).
 *
 * ONNX Runtime session options, measured once for this peer (2026-12-01,
 * 2 shared cores; 64 keep-alive clients on mlp v2 and 32 on ocr-cls, runs of
 * 3 s interleaved over several rounds, median jobs/s):
 *                                          mlp, 64 clients   ocr-cls, 32
 *   intra-op threads default, spinning 0   11,155             655
 *   intra-op threads default, spinning 1   12,949             613
 *   intraOpNumThreads 1 (no pool to spin)   7,678             647
 * The same option swung 5,000-16,000 jobs/s on mlp from one round to the
 * next on this shared machine, so for mlp the three are one figure. The
 * default is threads default, spinning 0 (PEER_INTRA_OP_THREADS=default,
 * PEER_ALLOW_SPINNING=0): best or tied on both models, the least peer CPU
 * per job on ocr-cls (1.62 ms against 1.71-1.77), where a run is long
 * enough for the second thread to help, and the same options as the
 * platform's worker sessions. Spinning threads burn the cores the event
 * loop and the clients need between runs. `GET /healthz` answers the
 * options in use, so a bench prints what it measured.
 *
 * On another 2-core machine (2026-12-01, later), ocr-cls at 32 clients went
 * the other way: intraOpNumThreads 1 served 726-795 jobs/s at 1.28-1.42
 * peer CPU ms per job, the default 558-614 at 1.92-2.10 (a batch-1 run there
 * took 0.85 ms on one thread and 1.2-1.4 ms through a 2-thread pool); mlp
 * stayed a tie. So the ocr bench runs this peer with both and holds the
 * platform against the faster (bench/sections/ocr.ts).
 *
 * What bounds it: onnxruntime-node 1.30's `session.run` is synchronous on
 * the calling thread (its promise only defers the call with setImmediate),
 * as it is in the platform's worker, so parsing and inference share this
 * process's one event loop (a second session would not run beside the
 * first; two such processes under node:cluster measured about half the
 * jobs/s on mlp and, on ocr-cls, no better beyond the noise: median 731
 * against 687 jobs/s over 7 rounds, spread 391-1,246 against 569-796).
 * The parsing side is kept short: a long base64 member is decoded
 * straight from the body's bytes instead of through a 150 KB JS string and
 * JSON.parse (PEER_LIFT_B64=0 turns that off: ocr-cls 616 jobs/s and 1.76
 * peer CPU ms per job without it, 655 and 1.62 with it, same rounds).
 */
import http from 'node:http';
import * as ort from 'onnxruntime-node';

type Nested = number | Nested[];

interface Encoded {
  datatype: string;
  shape: number[];
  b64: string;
}

const file = process.env.PEER_MODEL_FILE;
const modelName = process.env.PEER_MODEL_NAME;
if (!file || !modelName) {
  console.error('peer: PEER_MODEL_FILE and PEER_MODEL_NAME are required');
  process.exit(2);
}
const threadsEnv = process.env.PEER_INTRA_OP_THREADS ?? 'default';
const intraOpNumThreads = threadsEnv === 'default' || threadsEnv === '' ? undefined : Number(threadsEnv);
const allowSpinning = (process.env.PEER_ALLOW_SPINNING ?? '0') === '1' ? '1' : '0';
/** PEER_LIFT_B64=0: JSON.parse the whole body, base64 strings and all (the slower way, kept to compare). */
const liftB64 = process.env.PEER_LIFT_B64 !== '0';

const session = await ort.InferenceSession.create(file, {
  graphOptimizationLevel: 'all',
  ...(intraOpNumThreads ? { intraOpNumThreads } : {}),
  extra: { session: { intra_op: { allow_spinning: allowSpinning } } },
});
const inputNames = session.inputNames;
const outputNames = session.outputNames;
const sessionOptions = { intraOpNumThreads: intraOpNumThreads ?? 'default', allow_spinning: allowSpinning };

class BadRequest extends Error {}

/** A nested array of numbers → [shape, flat Float32Array], with 1 (the batch) in front of the shape. */
function fromNested(value: Nested[]): ort.Tensor {
  const shape: number[] = [1];
  for (let v: Nested = value; Array.isArray(v); v = v[0]!) shape.push(v.length);
  if (shape.length === 2) {
    // The common case (a vector): no recursion.
    for (const x of value) if (typeof x !== 'number') throw new BadRequest('a vector of numbers was expected');
    return new ort.Tensor('float32', Float32Array.from(value as number[]), shape);
  }
  let size = 1;
  for (const d of shape) size *= d;
  const data = new Float32Array(size);
  let i = 0;
  const walk = (v: Nested, depth: number): void => {
    if (depth === shape.length) {
      if (typeof v !== 'number') throw new BadRequest('ragged or non-numeric nested array');
      data[i++] = v;
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[depth]) throw new BadRequest('ragged nested array');
    for (const x of v) walk(x, depth + 1);
  };
  walk(value, 1);
  return new ort.Tensor('float32', data, shape);
}

/** `{datatype: "FP32", shape, b64}` → the little-endian bytes as a Float32Array (this machine is little-endian too). */
function fromEncoded(value: Encoded, decoded: readonly Uint8Array[]): ort.Tensor {
  if (value.datatype !== 'FP32' || !Array.isArray(value.shape) || typeof value.b64 !== 'string') throw new BadRequest('only FP32 {datatype, shape, b64} is served');
  const lifted = value.b64.charCodeAt(0) === 0 ? decoded[Number(value.b64.slice(1))] : undefined;
  const bytes = lifted ?? Buffer.from(value.b64, 'base64');
  let size = 1;
  for (const d of value.shape) size *= d;
  if (bytes.length !== size * 4) throw new BadRequest(`b64 holds ${bytes.length} bytes, shape ${JSON.stringify(value.shape)} needs ${size * 4}`);
  // A large Buffer owns its ArrayBuffer at offset 0; a small one may sit unaligned in the pool: copy then.
  const data = bytes.byteOffset % 4 === 0 ? new Float32Array(bytes.buffer, bytes.byteOffset, size) : new Float32Array(new Uint8Array(bytes).buffer);
  return new ort.Tensor('float32', data, [1, ...value.shape]);
}

/** Row 0 of a batch-1 output as a nested array (the batch dimension dropped, as the platform answers per instance). */
function toNested(t: ort.Tensor): Nested {
  const data = t.data as Float32Array;
  const shape = t.dims.slice(1);
  if (shape.length === 1) return Array.from(data);
  let i = 0;
  const build = (depth: number): Nested => {
    if (depth === shape.length) return data[i++]!;
    const row: Nested[] = new Array(shape[depth]!);
    for (let k = 0; k < row.length; k++) row[k] = build(depth + 1);
    return row;
  };
  return build(0);
}

// Base64 straight from the request's bytes: a long `"b64":"…"` member is
// decoded from the body into the tensor's bytes, and only the rest of the
// body (a few hundred bytes) becomes a string for JSON.parse, instead of a
// ~150 KB string scanned by JSON.parse and then decoded by Buffer.from.
// Anything unusual (an escape, a character outside the alphabet, spaces
// around the colon) is left in the body for JSON.parse and the plain path.

const B64_KEY = Buffer.from('"b64":"');
const PLACEHOLDER = '\\u0000'; // JSON for U+0000 followed by the index: no base64 text starts with it

/**
 * Standard padded base64 in src[from, to) → a new 4-byte-aligned buffer; null if it is anything else.
 * Node's native decoder does the work (a loop in JS took ~5× as long), fed slices of at most 64 Ki
 * characters: V8 puts a longer string in large-object space, one mmap each. It is lenient, so the
 * count of bytes it wrote is checked (it skips strays and stops at '=', writing fewer) and the
 * URL-safe '-' and '_' are looked for first.
 */
function decodeBase64(src: Buffer, from: number, to: number): Uint8Array | null {
  const length = to - from;
  if (length % 4 !== 0 || length === 0) return null;
  const pad = src[to - 1] === 0x3d ? (src[to - 2] === 0x3d ? 2 : 1) : 0;
  const want = (length / 4) * 3 - pad;
  const range = src.subarray(from, to);
  if (range.indexOf(0x2d) !== -1 || range.indexOf(0x5f) !== -1) return null;
  const out = Buffer.from(new ArrayBuffer(want));
  let written = 0;
  for (let p = from; p < to; p += 65_536) written += out.write(src.toString('latin1', p, Math.min(to, p + 65_536)), written, want - written, 'base64');
  return written === want ? new Uint8Array(out.buffer) : null;
}

/** The body as text for JSON.parse, with each long `"b64":"…"` value decoded here and replaced by a placeholder. */
function liftBase64(body: Buffer): { text: string; decoded: Uint8Array[] } {
  const decoded: Uint8Array[] = [];
  if (!liftB64) return { text: body.toString('utf8'), decoded };
  const parts: string[] = [];
  let copied = 0;
  for (let at = body.indexOf(B64_KEY); at !== -1; at = body.indexOf(B64_KEY, at + 1)) {
    const from = at + B64_KEY.length;
    const to = body.indexOf(0x22, from);
    if (to === -1) break;
    if (to - from < 1024) continue; // small: JSON.parse costs nothing worth saving
    const bytes = decodeBase64(body, from, to);
    if (!bytes) continue; // an escape or a stray character: the plain path decides
    parts.push(body.toString('utf8', copied, from), PLACEHOLDER + decoded.length);
    decoded.push(bytes);
    copied = to;
    at = to;
  }
  if (decoded.length === 0) return { text: body.toString('utf8'), decoded };
  parts.push(body.toString('utf8', copied));
  return { text: parts.join(''), decoded };
}

async function infer(body: Buffer): Promise<string> {
  let parsed: { model?: unknown; input?: Record<string, unknown> };
  const { text, decoded } = liftBase64(body);
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    throw new BadRequest('invalid JSON');
  }
  if (parsed.model !== modelName) throw new BadRequest(`this peer serves "${modelName}" only`);
  const input = parsed.input;
  if (typeof input !== 'object' || input === null) throw new BadRequest('input must be an object');
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of inputNames) {
    const v = input[name];
    if (Array.isArray(v)) feeds[name] = fromNested(v as Nested[]);
    else if (typeof v === 'object' && v !== null) feeds[name] = fromEncoded(v as Encoded, decoded);
    else throw new BadRequest(`input "${name}" is missing`);
  }
  const results = await session.run(feeds);
  const output: Record<string, Nested> = {};
  for (const name of outputNames) output[name] = toNested(results[name]!);
  return JSON.stringify({ output });
}

function answer(res: http.ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/healthz') {
    answer(res, 200, JSON.stringify({ model: modelName, file, inputs: inputNames, outputs: outputNames, session_options: sessionOptions, lift_b64: liftB64 }));
    return;
  }
  if (req.method !== 'POST' || req.url !== '/v1/jobs') {
    answer(res, 404, '{"error":"not found"}');
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    infer(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).then(
      (text) => answer(res, 200, text),
      (err: unknown) => answer(res, err instanceof BadRequest ? 400 : 500, JSON.stringify({ error: (err as Error).message })),
    );
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PEER_PORT ?? 0), process.env.PEER_HOST ?? '127.0.0.1');

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
