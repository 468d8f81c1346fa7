/**
 * @infer/sdk against a real in-process platform (gateway + worker, Redis,
 * ONNX Runtime), plus the transport's retry and deadline rules against a
 * stub fetch.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import {
  InferApiError,
  InferClient,
  InferTimeoutError,
  tensorB64,
  type Batch,
  type BatchItem,
  type BatchResultLine,
  type ModelDescription,
} from '@infer/sdk';
import { isRolloutEnded } from '@infer/sdk';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { OTHER_TENANT_KEY, REPO_ROOT, SHIPPED_MODELS, startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

const features = (seed: number) => Array.from({ length: 64 }, (_, i) => Math.sin(i + seed));

/** The thrown InferApiError of `promise`, failing the test if it resolves or throws something else. */
async function apiError(promise: Promise<unknown>): Promise<InferApiError> {
  try {
    await promise;
  } catch (err) {
    expect(err).to.be.instanceOf(InferApiError);
    return err as InferApiError;
  }
  throw new Error('expected an InferApiError, but the call succeeded');
}

/** True when the gateway has no such route yet (the generic 404, not a resource's). */
async function routeMissing(p: TestPlatform, pathname: string, init: RequestInit = {}): Promise<boolean> {
  const res = await p.api(pathname, init);
  const body = (await res.json().catch(() => ({}))) as { code?: string };
  return res.status === 404 && body.code === 'not_found';
}

describe('sdk: models and jobs', () => {
  let p: TestPlatform;
  let client: InferClient;
  before(async () => {
    p = await startPlatform();
    client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
  });
  after(async () => {
    await p.close();
  });

  it('lists and gets models', async () => {
    const models = await client.models.list();
    const mlp = models.find((m) => m.name === 'mlp');
    expect(mlp, 'mlp in the list').to.not.equal(undefined);
    const one = await client.models.get('mlp');
    expect(one.inputs[0]).to.deep.include({ name: 'features', datatype: 'FP32' });
    expect(one.versions).to.include(one.default_version);
  });

  it('throws a typed 404 for an unknown model and an unknown job', async () => {
    const model = await apiError(client.models.get('no-such-model'));
    expect(model).to.include({ status: 404, code: 'model_not_found' });
    expect(model.title).to.be.a('string');
    expect(model.type).to.match(/^https?:\/\//);
    const job = await apiError(client.jobs.get('00000000-0000-4000-8000-000000000000'));
    expect(job).to.include({ status: 404, code: 'job_not_found' });
  });

  it('throws a typed 422 invalid_input for a wrong shape', async () => {
    const err = await apiError(client.jobs.create({ model: 'mlp', input: { features: [1, 2, 3] } }));
    expect(err).to.include({ status: 422, code: 'invalid_input' });
    expect(err.detail).to.be.a('string').and.not.equal('');
    expect(err.retryAfter).to.equal(undefined);
  });

  it('creates a job, then waits for it by long polls', async () => {
    const created = await client.jobs.create({ model: 'mlp', input: { features: features(1) }, metadata: { n: 1 } });
    expect(created.object).to.equal('job');
    const ended = await client.jobs.wait(created.id, { timeoutMs: 20_000 });
    expect(ended.status).to.equal('succeeded');
    expect(ended.metadata).to.deep.equal({ n: 1 });
    expect(ended.output?.probabilities).to.have.length(4);
    const again = await client.jobs.get(created.id);
    expect(again).to.deep.equal(ended);
  });

  it('creates with wait and answers with the ended job', async () => {
    const job = await client.jobs.create({ model: 'mlp', version: '1', input: { features: features(2) } }, { wait: 20 });
    expect(job.status).to.equal('succeeded');
    expect(job.version).to.equal('1');
  });

  it('runs a job to its end', async () => {
    const job = await client.jobs.run({ model: 'mlp', input: { features: features(3) } }, { timeoutMs: 20_000 });
    expect(job.status).to.equal('succeeded');
    expect(job.metrics?.batch_size).to.be.at.least(1);
  });

  it('answers 409 conflict when cancelling an ended job', async () => {
    const job = await client.jobs.run({ model: 'mlp', input: { features: features(4) } }, { timeoutMs: 20_000 });
    expect(job.status).to.equal('succeeded');
    expect(await apiError(client.jobs.cancel(job.id))).to.include({ status: 409, code: 'conflict' });
  });

  it('returns the first job for a repeated idempotency key', async () => {
    const body = { model: 'mlp', input: { features: features(9) } };
    const first = await client.jobs.create(body, { idempotencyKey: 'sdk-idem-1' });
    const second = await client.jobs.create(body, { idempotencyKey: 'sdk-idem-1' });
    expect(second.id).to.equal(first.id);
  });

  it('sends a b64 tensor whose output matches the nested-array form', async () => {
    const values = features(5);
    const b64 = tensorB64('FP32', [64], new Float32Array(values));
    expect(b64).to.have.keys('datatype', 'shape', 'b64');
    // Round trip of the bytes themselves: little-endian FP32.
    const back = new Float32Array(new Uint8Array(Buffer.from(b64.b64, 'base64')).buffer);
    expect(Array.from(back)).to.deep.equal(Array.from(new Float32Array(values)));
    const [viaB64, viaNested, viaConverted] = await Promise.all([
      client.jobs.run({ model: 'mlp', input: { features: b64 } }),
      client.jobs.run({ model: 'mlp', input: { features: values } }),
      client.jobs.run({ model: 'mlp', input: { features: tensorB64('FP32', [64], values) } }),
    ]);
    expect(viaB64.status).to.equal('succeeded');
    expect(viaB64.output).to.deep.equal(viaNested.output);
    expect(viaConverted.output).to.deep.equal(viaNested.output);
  });

  it("does not see another tenant's job", async () => {
    const job = await client.jobs.create({ model: 'mlp', input: { features: features(6) } });
    const other = new InferClient({ baseUrl: p.baseUrl, apiKey: OTHER_TENANT_KEY });
    expect(await apiError(other.jobs.get(job.id))).to.include({ status: 404, code: 'job_not_found' });
  });

  it('rejects a bad API key with 401 unauthorized', async () => {
    const bad = new InferClient({ baseUrl: p.baseUrl, apiKey: 'nope' });
    expect(await apiError(bad.models.list())).to.include({ status: 401, code: 'unauthorized' });
  });

  it('checks tensorB64 arguments', () => {
    expect(() => tensorB64('FP32', [3], new Float32Array(4))).to.throw(TypeError, /holds 3 values/);
    expect(() => tensorB64('BYTES', [1], [1])).to.throw(TypeError, 'the API takes no BYTES');
    expect(tensorB64('INT64', [2], [1, 2]).b64).to.equal(Buffer.from(new BigInt64Array([1n, 2n]).buffer).toString('base64'));
  });

  it('returns the webhook secret', async function () {
    if (await routeMissing(p, '/v1/webhooks/secret')) this.skip();
    const secret = await client.webhooks.secret();
    expect(secret).to.match(/^whsec_/);
  });
});

describe('sdk: cancel and wait deadlines (no worker)', () => {
  let p: TestPlatform;
  let client: InferClient;
  before(async () => {
    p = await startPlatform({ worker: false });
    client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
  });
  after(async () => {
    await p.close();
  });

  it('cancels a queued job; wait() then answers at once and a second cancel is 409', async () => {
    const job = await client.jobs.create({ model: 'mlp', input: { features: features(7) } });
    expect(job.status).to.equal('queued');
    const canceled = await client.jobs.cancel(job.id);
    expect(canceled.status).to.equal('canceled');
    // wait() returns at once for an ended job.
    expect((await client.jobs.wait(job.id, { timeoutMs: 5000 })).status).to.equal('canceled');
    expect(await apiError(client.jobs.cancel(job.id))).to.include({ status: 409, code: 'conflict' });
  });

  it('gives up waiting with InferTimeoutError', async () => {
    const job = await client.jobs.create({ model: 'mlp', input: { features: features(8) } });
    const started = Date.now();
    const err = await client.jobs.wait(job.id, { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(InferTimeoutError);
    // One long poll of wait=1, not a busy loop.
    expect(Date.now() - started).to.be.below(5000);
    await client.jobs.cancel(job.id);
  });
});

describe('sdk: transport', () => {
  type Call = { url: string; method: string; headers: Headers; body: string | undefined };
  function stub(responses: Array<() => Response>): { fetch: typeof fetch; calls: Call[] } {
    const calls: Call[] = [];
    const fakeFetch: typeof fetch = async (input, init) => {
      const body = typeof init?.body === 'string' ? init.body : undefined;
      calls.push({ url: String(input), method: init?.method ?? 'GET', headers: new Headers(init?.headers), body });
      const next = responses.shift();
      if (!next) throw new Error('no more stub responses');
      return next();
    };
    return { fetch: fakeFetch, calls };
  }
  const problem = (status: number, code: string, headers: Record<string, string> = {}) => () =>
    new Response(JSON.stringify({ type: 'about:blank', title: 't', status, detail: `d-${code}`, code }), {
      status,
      headers: { 'content-type': 'application/problem+json', ...headers },
    });
  const ok = (body: unknown) => () => new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } });

  it('retries a GET on 429 and 503 after Retry-After, with the auth header', async () => {
    const s = stub([problem(429, 'rate_limited', { 'retry-after': '0' }), problem(503, 'unavailable', { 'retry-after': '0' }), ok({ data: [] })]);
    const client = new InferClient({ baseUrl: 'http://x.invalid/base/', apiKey: 'k', fetch: s.fetch });
    expect(await client.models.list()).to.deep.equal([]);
    expect(s.calls).to.have.length(3);
    expect(s.calls[0]!.url).to.equal('http://x.invalid/base/v1/models');
    expect(s.calls[0]!.headers.get('authorization')).to.equal('Bearer k');
  });

  it('stops retrying after maxRetries and carries retryAfter', async () => {
    const s = stub([problem(503, 'queue_full', { 'retry-after': '0' }), problem(503, 'queue_full', { 'retry-after': '0' })]);
    const client = new InferClient({ baseUrl: 'http://x.invalid', apiKey: 'k', fetch: s.fetch, maxRetries: 1 });
    const err = await apiError(client.jobs.get('j'));
    expect(err).to.include({ status: 503, code: 'queue_full', retryAfter: 0 });
    expect(s.calls).to.have.length(2);
  });

  it('does not wait out a Retry-After longer than maxRetryDelayMs', async () => {
    const s = stub([problem(429, 'rate_limited', { 'retry-after': '120' })]);
    const client = new InferClient({ baseUrl: 'http://x.invalid', apiKey: 'k', fetch: s.fetch });
    expect(await apiError(client.jobs.get('j'))).to.include({ code: 'rate_limited', retryAfter: 120 });
    expect(s.calls).to.have.length(1);
  });

  it('never retries a POST without an idempotency key', async () => {
    const s = stub([problem(503, 'queue_full', { 'retry-after': '0' })]);
    const client = new InferClient({ baseUrl: 'http://x.invalid', apiKey: 'k', fetch: s.fetch });
    expect(await apiError(client.jobs.create({ model: 'mlp', input: {} }))).to.include({ code: 'queue_full' });
    expect(s.calls).to.have.length(1);
  });

  it('sends Idempotency-Key, and retries such a POST since the server deduplicates it', async () => {
    const s = stub([problem(503, 'unavailable', { 'retry-after': '0' }), ok({ id: 'j', status: 'queued' })]);
    const client = new InferClient({ baseUrl: 'http://x.invalid', apiKey: 'k', fetch: s.fetch });
    await client.jobs.create({ model: 'mlp', input: {} }, { idempotencyKey: 'abc' });
    expect(s.calls.map((c) => [c.method, c.headers.get('idempotency-key')])).to.deep.equal([
      ['POST', 'abc'],
      ['POST', 'abc'],
    ]);
  });

  it('turns a non-problem error body into an InferApiError', async () => {
    const s = stub([() => new Response('<html>bad gateway</html>', { status: 502, statusText: 'Bad Gateway' })]);
    const client = new InferClient({ baseUrl: 'http://x.invalid', apiKey: 'k', fetch: s.fetch });
    const err = await apiError(client.models.list());
    expect(err).to.include({ status: 502, code: 'http_error', title: 'Bad Gateway' });
    expect(err.detail).to.contain('bad gateway');
  });

  it('aborts a request that outlives timeoutMs', async () => {
    const hanging: typeof fetch = (_input, init) =>
      new Promise((_resolve, reject) => {
        init?.signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
      });
    const client = new InferClient({ baseUrl: 'http://x.invalid', apiKey: 'k', fetch: hanging, timeoutMs: 50 });
    const err = await client.models.list().catch((e: unknown) => e);
    expect(err).to.be.instanceOf(InferTimeoutError);
  });

  it('sends Prefer: wait and stretches the deadline by it', async () => {
    const s = stub([ok({ id: 'j', status: 'succeeded' })]);
    const client = new InferClient({ baseUrl: 'http://x.invalid', apiKey: 'k', fetch: s.fetch });
    await client.jobs.get('j', { wait: 90 });
    // Past the default MAX_WAIT_SECONDS (60): a gateway may be set to honour up to 600, and cuts it to its own.
    expect(s.calls[0]!.headers.get('prefer')).to.equal('wait=90');
  });

  it('sends the admin key on the model lifecycle calls only, to their routes, with their methods and bodies', async () => {
    const s = stub(Array.from({ length: 10 }, () => ok({ data: [] })));
    const client = new InferClient({ baseUrl: 'http://x.invalid/base', apiKey: 'tenant', adminKey: 'admin', fetch: s.fetch });
    await client.models.get('m/1');
    await client.models.setRouting('m/1', { '2': 90, '3': 10 });
    await client.models.setRouting('m/1', null);
    await client.models.load('m/1', 3);
    await client.models.unload('m/1', '1');
    await client.models.startRollout('m/1', { version: 3, steps: [10, 100], step_seconds: 30 });
    await client.models.rollouts('m/1');
    await client.models.rollout('m/1', 'ro_a');
    await client.models.cancelRollout('m/1', 'ro_a');
    await client.models.events('m/1', { limit: 5, after: 'evt_x' });
    const m = 'http://x.invalid/base/v1/models/m%2F1';
    expect(s.calls.map((c) => [c.method, c.url, c.headers.get('authorization'), c.body ?? null])).to.deep.equal([
      ['GET', m, 'Bearer tenant', null],
      ['PUT', `${m}/routing`, 'Bearer admin', '{"weights":{"2":90,"3":10}}'],
      ['PUT', `${m}/routing`, 'Bearer admin', '{"weights":null}'],
      ['POST', `${m}/versions/3/load`, 'Bearer admin', null],
      ['POST', `${m}/versions/1/unload`, 'Bearer admin', null],
      ['POST', `${m}/rollouts`, 'Bearer admin', '{"version":3,"steps":[10,100],"step_seconds":30}'],
      ['GET', `${m}/rollouts`, 'Bearer admin', null],
      ['GET', `${m}/rollouts/ro_a`, 'Bearer admin', null],
      ['POST', `${m}/rollouts/ro_a/cancel`, 'Bearer admin', null],
      ['GET', `${m}/events?limit=5&after=evt_x`, 'Bearer admin', null],
    ]);
  });

  it('sends apiKey on the admin calls of a client without an adminKey', async () => {
    const s = stub([ok({ object: 'list', data: [], has_more: false })]);
    const client = new InferClient({ baseUrl: 'http://x.invalid', apiKey: 'only-key', fetch: s.fetch });
    expect(await client.models.events('mlp')).to.deep.equal({ object: 'list', data: [], has_more: false });
    expect(s.calls[0]!.url).to.equal('http://x.invalid/v1/models/mlp/events');
    expect(s.calls[0]!.headers.get('authorization')).to.equal('Bearer only-key');
  });
});

/**
 * The streaming halves of the batch client against a bare HTTP server, so
 * they are covered whatever the gateway serves: the upload arrives as a
 * chunked NDJSON body with the query parameters, and results are parsed line
 * by line across chunk boundaries.
 */
describe('sdk: batch streaming (stub server)', () => {
  let server: http.Server;
  let client: InferClient;
  let dir: string;
  let received: { url: string; contentType: string | undefined; contentEncoding: string | undefined; encoding: string | undefined; body: string; bodyBytes: Buffer } | undefined;
  const batch = { id: 'b1', object: 'batch', status: 'queued', request_counts: { total: 0, succeeded: 0, failed: 0, canceled: 0 } };

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdk-stream-'));
    server = http.createServer((req, res) => {
      if (req.method === 'POST') {
        const parts: Buffer[] = [];
        req.on('data', (c: Buffer) => parts.push(c));
        req.on('end', () => {
          const bodyBytes = Buffer.concat(parts);
          received = {
            url: req.url ?? '',
            contentType: req.headers['content-type'],
            contentEncoding: req.headers['content-encoding'],
            encoding: req.headers['transfer-encoding'],
            body: bodyBytes.toString('utf8'),
            bodyBytes,
          };
          res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify(batch));
        });
        return;
      }
      // Results in awkward chunks: a line split across writes, a blank line, no final newline.
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.write('{"index":0,"custom_id":"a","sta');
      res.write('tus":"succeeded","output":{"y":[1]},"error":null}\n\n{"index":1,');
      res.end('"custom_id":null,"status":"failed","output":null,"error":{"code":"invalid_input","message":"m"}}');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    client = new InferClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, apiKey: 'k' });
  });
  after(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('uploads a file path as chunked application/x-ndjson with model, version and webhook', async () => {
    const file = path.join(dir, 'big.ndjson');
    const line = `${JSON.stringify({ input: { features: features(0) } })}\n`;
    fs.writeFileSync(file, line.repeat(500)); // several read chunks
    await client.batches.upload({ model: 'mlp', version: 2, webhook: 'https://example.com/h' }, file);
    expect(received?.url).to.equal('/v1/batches?model=mlp&version=2&webhook=https%3A%2F%2Fexample.com%2Fh');
    expect(received?.contentType).to.equal('application/x-ndjson');
    expect(received?.encoding).to.equal('chunked');
    expect(received?.body).to.equal(line.repeat(500));
  });

  it('uploads a gzip file as it is, with Content-Encoding: gzip (or the coding a caller names)', async () => {
    const line = `${JSON.stringify({ input: { features: features(0) } })}\n`;
    const file = path.join(dir, 'rows.ndjson.gz');
    const packed = gzipSync(line.repeat(20));
    fs.writeFileSync(file, packed);
    await client.batches.upload({ model: 'mlp' }, file);
    expect(received?.contentEncoding).to.equal('gzip');
    expect(received?.bodyBytes?.equals(packed)).to.equal(true);
    await client.batches.upload({ model: 'mlp' }, path.join(dir, 'big.ndjson'));
    expect(received?.contentEncoding).to.equal(undefined);
    await client.batches.upload({ model: 'mlp', contentEncoding: 'br' }, [brotliCompressSync(line)]);
    expect(received?.contentEncoding).to.equal('br');
  });

  it('uploads items, strings and bytes from an iterable', async () => {
    async function* chunks() {
      yield { custom_id: 'x', input: { a: [1] } };
      yield '{"input":{"a":[2]}}\n';
      yield new TextEncoder().encode('{"input":{"a":[3]}}\n');
    }
    await client.batches.upload({ model: 'm' }, chunks());
    expect(received?.body).to.equal('{"custom_id":"x","input":{"a":[1]}}\n{"input":{"a":[2]}}\n{"input":{"a":[3]}}\n');
  });

  it('parses streamed results across chunk boundaries', async () => {
    const lines: BatchResultLine[] = [];
    for await (const line of client.batches.results('b1')) lines.push(line);
    expect(lines).to.deep.equal([
      { index: 0, custom_id: 'a', status: 'succeeded', output: { y: [1] }, error: null },
      { index: 1, custom_id: null, status: 'failed', output: null, error: { code: 'invalid_input', message: 'm' } },
    ]);
  });

  it('rejects a missing file before sending anything', async () => {
    received = undefined;
    const err = await client.batches.upload({ model: 'm' }, path.join(dir, 'nope.ndjson')).catch((e: unknown) => e);
    expect((err as NodeJS.ErrnoException).code).to.equal('ENOENT');
    expect(received).to.equal(undefined);
  });
});

describe('sdk: batches', () => {
  let p: TestPlatform;
  let client: InferClient;
  let dir: string;
  before(async function () {
    p = await startPlatform();
    client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdk-test-'));
    // Capability probe: until /v1/batches is served, the generic route 404 answers.
    if (await routeMissing(p, '/v1/batches', { method: 'POST', body: '{}' })) this.skip();
  });
  after(async () => {
    await p?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const items = (n: number, offset = 0): BatchItem[] =>
    Array.from({ length: n }, (_, i) => ({ custom_id: `item-${offset + i}`, input: { features: features(offset + i) } }));

  async function collect(id: string): Promise<BatchResultLine[]> {
    const lines: BatchResultLine[] = [];
    for await (const line of client.batches.results(id)) lines.push(line);
    return lines;
  }

  it('creates a JSON batch, waits with progress and reads its results in order', async () => {
    const created = await client.batches.create({ model: 'mlp', items: items(5), metadata: { run: 'json' } });
    expect(created.object).to.equal('batch');
    expect(created.request_counts.total).to.equal(5);
    const seen: Batch[] = [];
    const ended = await client.batches.wait(created.id, { pollMs: 50, timeoutMs: 20_000, onProgress: (b) => seen.push(b) });
    expect(ended.status).to.equal('completed');
    expect(ended.request_counts).to.deep.include({ total: 5, succeeded: 5, failed: 0 });
    expect(seen.at(-1)).to.deep.equal(ended);
    const lines = await collect(created.id);
    expect(lines.map((l) => l.index)).to.deep.equal([0, 1, 2, 3, 4]);
    expect(lines.map((l) => l.custom_id)).to.deep.equal(['item-0', 'item-1', 'item-2', 'item-3', 'item-4']);
    expect(lines.every((l) => l.status === 'succeeded' && l.output !== null)).to.equal(true);
  });

  it('streams an NDJSON upload from a file path and from a generator; a bad line fails alone', async () => {
    const file = path.join(dir, 'items.ndjson');
    const text = items(3).map((it) => JSON.stringify(it)).join('\n') + '\nnot json\n';
    fs.writeFileSync(file, text);
    const fromFile = await client.batches.upload({ model: 'mlp', version: 2 }, file);
    expect(fromFile.version).to.equal('2');
    async function* generate() {
      for (const item of items(4, 10)) yield item;
    }
    const fromGenerator = await client.batches.upload({ model: 'mlp' }, generate());
    const [a, b] = await Promise.all([
      client.batches.wait(fromFile.id, { pollMs: 50, timeoutMs: 20_000 }),
      client.batches.wait(fromGenerator.id, { pollMs: 50, timeoutMs: 20_000 }),
    ]);
    expect(a.request_counts).to.deep.include({ total: 4, succeeded: 3, failed: 1 });
    expect(b.request_counts).to.deep.include({ total: 4, succeeded: 4 });
    const lines = await collect(fromFile.id);
    expect(lines[3]).to.deep.include({ index: 3, status: 'failed' });
    expect(lines[3]!.error?.code).to.be.a('string');
  });

  it('answers 409 conflict for results until the end; cancel ends every item canceled', async () => {
    // No worker: the batch stays queued, so what follows does not race the inference.
    const q = await startPlatform({ worker: false });
    try {
      const idle = new InferClient({ baseUrl: q.baseUrl, apiKey: TEST_KEY });
      const created = await idle.batches.create({ model: 'mlp', items: items(3) });
      expect(created.status).to.equal('queued');
      const early = await apiError(idle.batches.results(created.id).next());
      expect(early).to.include({ status: 409, code: 'conflict' });
      const canceled = await idle.batches.cancel(created.id);
      const ended = await idle.batches.wait(created.id, { pollMs: 50, timeoutMs: 10_000 });
      expect([canceled.status, ended.status]).to.include('canceled');
      expect(ended.request_counts).to.deep.include({ total: 3, canceled: 3 });
      const lines: BatchResultLine[] = [];
      for await (const line of idle.batches.results(created.id)) lines.push(line);
      expect(lines.map((l) => l.status)).to.deep.equal(['canceled', 'canceled', 'canceled']);
    } finally {
      await q.close();
    }
  });

  it('lists batches page by page', async () => {
    const page = await client.batches.list({ limit: 2 });
    expect(page.data).to.have.length(2);
    const all: Batch[] = [];
    for await (const b of client.batches.listAll({ limit: 2 })) all.push(b);
    expect(all.length).to.be.at.least(3);
    expect(new Set(all.map((b) => b.id)).size).to.equal(all.length);
    const other = new InferClient({ baseUrl: p.baseUrl, apiKey: OTHER_TENANT_KEY });
    expect((await other.batches.list()).data).to.have.length(0);
  });

  it('throws batch_not_found for an unknown id', async () => {
    expect(await apiError(client.batches.get('00000000-0000-4000-8000-000000000000'))).to.include({
      status: 404,
      code: 'batch_not_found',
    });
  });
});

/**
 * The model lifecycle through the SDK, against a platform with an admin key
 * and a throwaway model repository (mlp 1 and 2, the int8 candidate copied
 * in as 3). MODEL_POLL_SECONDS=0: only the shared state moving (an admin's
 * load) makes the processes look at the folder.
 */
describe('sdk: model lifecycle (admin key)', () => {
  const ADMIN_KEY = 'sdk-admin-key';
  const CANDIDATE = path.join(REPO_ROOT, 'examples', 'models', 'mlp', '3');
  let p: TestPlatform;
  let repo: TempModelRepo;
  let client: InferClient;
  let tenantOnly: InferClient;

  const stateOf = async (version: string) => (await client.models.get('mlp')).versions_detail.find((d) => d.version === version)?.state;
  const routingOf = async () => {
    const m = await client.models.get('mlp');
    return { routing: m.routing, routing_source: m.routing_source };
  };

  before(async () => {
    if (!fs.existsSync(path.join(CANDIDATE, 'model.onnx'))) throw new Error(`${CANDIDATE}/model.onnx is missing: run npm run models`);
    repo = tempModelRepo({ mlp: { from: path.join(SHIPPED_MODELS, 'mlp') } });
    p = await startPlatform({ models: repo.root, env: { ADMIN_API_KEYS: `ops:${ADMIN_KEY}`, MODEL_POLL_SECONDS: '0' } });
    client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY, adminKey: ADMIN_KEY });
    tenantOnly = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
  });

  it("gets and lists models with their versions' states and routing", async () => {
    const mlp: ModelDescription = await client.models.get('mlp');
    expect(mlp.versions_detail).to.deep.equal([
      { version: '1', state: 'ready', workers_ready: 1 },
      { version: '2', state: 'ready', workers_ready: 1 },
    ]);
    expect(mlp).to.deep.include({ routing: { '2': 100 }, routing_source: 'default', default_version: '2' });
    expect((await client.models.list()).map((m) => [m.name, m.routing])).to.deep.equal([['mlp', { '2': 100 }]]);
  });

  it('refuses the admin calls with a tenant key (403 forbidden) and an unknown key (401)', async () => {
    const stranger = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY, adminKey: 'not-a-key' });
    const calls = (c: InferClient) => [
      c.models.setRouting('mlp', null),
      c.models.load('mlp', 1),
      c.models.unload('mlp', 1),
      c.models.startRollout('mlp', { version: 1, steps: [100], step_seconds: 1 }),
      c.models.rollouts('mlp'),
      c.models.rollout('mlp', 'ro_x'),
      c.models.cancelRollout('mlp', 'ro_x'),
      c.models.events('mlp'),
    ];
    for (const err of await Promise.all(calls(tenantOnly).map(apiError))) expect(err).to.include({ status: 403, code: 'forbidden' });
    for (const err of await Promise.all(calls(stranger).map(apiError))) expect(err).to.include({ status: 401, code: 'unauthorized' });
    expect(await routingOf()).to.deep.equal({ routing: { '2': 100 }, routing_source: 'default' });
  });

  it('pins, loads a copied-in version, canaries, rejects a bad routing and resets to the default', async function () {
    this.timeout(60_000);
    expect((await client.models.setRouting('mlp', { '2': 100 })).routing_source).to.equal('explicit');
    fs.symlinkSync(CANDIDATE, path.join(repo.root, 'mlp', '3'), 'dir');
    const loading = await client.models.load('mlp', '3');
    expect(loading.versions_detail.map((d) => d.version)).to.include('3');
    await waitUntil(async () => (await stateOf('3')) === 'ready', 20_000, 'version 3 ready');
    expect(await routingOf()).to.deep.equal({ routing: { '2': 100 }, routing_source: 'explicit' });

    const canary = await client.models.setRouting('mlp', { '2': 90, '3': 10 });
    expect(canary).to.deep.include({ routing: { '2': 90, '3': 10 }, routing_source: 'explicit' });
    // Unpinned jobs follow the weights exactly (smooth weighted round-robin): 1 in 10 to version 3.
    const jobs = await Promise.all(Array.from({ length: 20 }, (_, i) => client.jobs.run({ model: 'mlp', input: { features: features(i) } }, { timeoutMs: 20_000 })));
    expect(jobs.filter((j) => j.version === '3')).to.have.length(2);

    expect(await apiError(client.models.setRouting('mlp', { '2': 90, '3': 20 }))).to.include({ status: 422, code: 'invalid_routing' });
    expect(await apiError(client.models.setRouting('mlp', { '2': 50, '9': 50 }))).to.include({ status: 422, code: 'invalid_routing' });
    expect(await apiError(client.models.setRouting('nope', null))).to.include({ status: 404, code: 'model_not_found' });

    expect(await client.models.setRouting('mlp', null)).to.deep.include({ routing: { '3': 100 }, routing_source: 'default' });
  });

  it('unloads a version (draining, then gone) and loads it again', async function () {
    this.timeout(60_000);
    const draining = await client.models.unload('mlp', 1);
    expect(draining.versions_detail.find((d) => d.version === '1')?.state).to.equal('draining');
    expect(draining.versions).to.not.include('1');
    await waitUntil(async () => (await stateOf('1')) === undefined, 30_000, 'version 1 unloaded');
    expect(await apiError(client.models.unload('mlp', 1))).to.include({ status: 404, code: 'version_not_found' });
    expect(await apiError(client.models.load('mlp', 7))).to.include({ status: 404, code: 'version_not_found' });

    await client.models.load('mlp', 1);
    await waitUntil(async () => (await stateOf('1')) === 'ready', 20_000, 'version 1 ready again');
    expect((await client.models.get('mlp')).versions).to.deep.equal(['1', '2', '3']);
  });

  it('starts a rollout, lists it, gets it and cancels it (the routing goes back)', async function () {
    this.timeout(30_000);
    await client.models.setRouting('mlp', { '2': 100 });
    const rollout = await client.models.startRollout('mlp', { version: 3, steps: [10, 50, 100], step_seconds: 600, max_error_rate: 0.05 });
    expect(rollout).to.deep.include({ model: 'mlp', version: '3', state: 'running', step: 0, max_error_rate: 0.05, max_p50_latency_ratio: 2, ended_at: null, reason: null });
    expect(isRolloutEnded(rollout)).to.equal(false);
    expect(await routingOf()).to.deep.equal({ routing: { '2': 90, '3': 10 }, routing_source: 'explicit' });

    expect(await apiError(client.models.startRollout('mlp', { version: 3, steps: [100], step_seconds: 5 }))).to.include({ status: 409, code: 'conflict' });
    expect(await apiError(client.models.setRouting('mlp', { '2': 100 }))).to.include({ status: 409, code: 'conflict' });
    expect((await client.models.rollouts('mlp')).map((r) => [r.id, r.state])).to.deep.equal([[rollout.id, 'running']]);
    expect(await client.models.rollout('mlp', rollout.id)).to.deep.equal(rollout);
    expect(await apiError(client.models.rollout('mlp', 'ro_missing'))).to.include({ status: 404 });

    const canceled = await client.models.cancelRollout('mlp', rollout.id);
    expect(canceled).to.deep.include({ id: rollout.id, state: 'canceled', reason: 'canceled by ops' });
    expect(isRolloutEnded(canceled)).to.equal(true);
    await waitUntil(async () => JSON.stringify(await routingOf()) === JSON.stringify({ routing: { '2': 100 }, routing_source: 'explicit' }), 5000, 'routing back to 2=100');
    expect(await apiError(client.models.cancelRollout('mlp', rollout.id))).to.include({ status: 409, code: 'conflict' });
  });

  it('pages through the events log, newest first', async () => {
    const all = await client.models.events('mlp', { limit: 100 });
    expect(all).to.include({ object: 'list', has_more: false });
    expect(all.data[0]).to.deep.include({ type: 'rollout_canceled', actor: 'ops' });
    expect(all.data.map((e) => e.type)).to.include.members(['routing_changed', 'version_loaded', 'version_unloaded', 'rollout_started']);
    const first = await client.models.events('mlp', { limit: 3 });
    expect(first.has_more).to.equal(true);
    const second = await client.models.events('mlp', { limit: 3, after: first.data[2]!.id });
    expect([...first.data, ...second.data].map((e) => e.id)).to.deep.equal(all.data.slice(0, 6).map((e) => e.id));
    expect(await apiError(client.models.events('mlp', { after: 'evt_unknown' }))).to.include({ status: 400, code: 'invalid_input' });
  });
});

