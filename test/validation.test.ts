import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { expectNoStack, expectProblem, expectRetryAfter, postJob, QueueProbe, type QueueSnapshot } from './helpers/jobs.js';
import { boolNotModel, tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { seededFloats } from './helpers/ort-reference.js';
import { FIXTURE_MODELS, OTHER_TENANT_KEY, SHIPPED_MODELS, startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

const features = Array.from(seededFloats(64, 1));
const f32b64 = (values: ArrayLike<number>) => Buffer.from(Float32Array.from(values).buffer).toString('base64');
const withAt = <T>(values: readonly T[], i: number, v: unknown): unknown[] => values.map((x, k) => (k === i ? v : x));

/** One platform, one probe, and the snapshot each test compares against. */
function harness(options: { repo: () => TempModelRepo; env?: Record<string, string>; probe: ReadonlyArray<readonly [string, string]> }) {
  const h = {} as { p: TestPlatform; probe: QueueProbe; repo: TempModelRepo; before: QueueSnapshot };
  before(async () => {
    h.repo = options.repo();
    h.p = await startPlatform({ models: h.repo.root, worker: false, ...(options.env ? { env: options.env } : {}) });
    h.probe = new QueueProbe(TEST_REDIS_URL, h.p.prefix, options.probe);
  });
  beforeEach(async () => {
    h.before = await h.probe.snapshot();
  });
  after(async () => {
    await h.probe?.close();
    await h.p?.close();
    h.repo?.remove();
  });
  return h;
}

describe('validation: bad requests are refused and nothing is enqueued', () => {
  const h = harness({
    repo: () =>
      tempModelRepo({
        mlp: { from: path.join(SHIPPED_MODELS, 'mlp') },
        'ocr-cls': { from: path.join(SHIPPED_MODELS, 'ocr-cls') },
        'scale-int': { from: path.join(FIXTURE_MODELS, 'scale-int') },
        'scalar-double': { from: path.join(FIXTURE_MODELS, 'scalar-double') },
        'bool-not': { onnx: boolNotModel() },
      }),
    probe: [
      ['mlp', '1'],
      ['mlp', '2'],
      ['ocr-cls', '1'],
      ['scale-int', '1'],
      ['scalar-double', '1'],
      ['bool-not', '1'],
    ],
  });

  /** POST a raw body and expect this problem. */
  async function refused(body: string, status: number, code: string, label: string): Promise<void> {
    const res = await h.p.api('/v1/jobs', { method: 'POST', body });
    try {
      await expectProblem(res, status, code);
    } catch (err) {
      (err as Error).message = `${label}: ${(err as Error).message}`;
      throw err;
    }
  }
  const refusedJson = (body: unknown, status: number, code: string, label: string) => refused(JSON.stringify(body), status, code, label);
  const mlpWith = (value: unknown) => ({ model: 'mlp', input: { features: value } });

  afterEach(async function () {
    // Every test here sends only bad requests unless it says otherwise.
    if (this.currentTest?.state === 'passed' && !this.currentTest.title.includes('(control)')) await h.probe.expectNothingNew(h.before);
  });

  it('400 invalid_json for bytes that are not JSON', async () => {
    for (const body of ['{"model":', "{'model': 'mlp'}", '{model: "mlp"}', '{"model":"mlp"} trailing', 'hello']) {
      await refused(body, 400, 'invalid_json', body);
    }
    // Any content type is read as JSON, and still refused when it is not.
    const res = await h.p.api('/v1/jobs', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'not json' });
    await expectProblem(res, 400, 'invalid_json');
  });

  it('400 invalid_input for JSON that is not the body: not an object, missing or mistyped fields, unknown fields', async () => {
    const cases: Array<[string, unknown]> = [
      ['an array', [{ model: 'mlp' }]],
      ['a string', 'mlp'],
      ['a number', 42],
      ['null', null],
      ['no model', { input: { features } }],
      ['no input', { model: 'mlp' }],
      ['model is a number', { model: 5, input: { features } }],
      ['model is empty', { model: '', input: { features } }],
      ['input is an array', { model: 'mlp', input: [features] }],
      ['input is a string', { model: 'mlp', input: 'features' }],
      ['version is not a positive integer', { model: 'mlp', version: 'latest', input: { features } }],
      ['version is a fraction', { model: 'mlp', version: 1.5, input: { features } }],
      ['version is negative', { model: 'mlp', version: -1, input: { features } }],
      ['metadata is a string', { model: 'mlp', input: { features }, metadata: 'x' }],
      ['metadata is an array', { model: 'mlp', input: { features }, metadata: [1] }],
      ['webhook is a number', { model: 'mlp', input: { features }, webhook: 5 }],
      ['unknown event filter', { model: 'mlp', input: { features }, webhook: 'https://example.com/h', webhook_events_filter: ['done'] }],
      ['event filter is a string', { model: 'mlp', input: { features }, webhook: 'https://example.com/h', webhook_events_filter: 'completed' }],
      // A subset: each event at most once, however many are listed.
      ['an event filter naming an event twice', { model: 'mlp', input: { features }, webhook: 'https://example.com/h', webhook_events_filter: ['start', 'start'] }],
      ['an event filter of three', { model: 'mlp', input: { features }, webhook: 'https://example.com/h', webhook_events_filter: ['start', 'completed', 'start'] }],
      ['an unknown top-level field', { model: 'mlp', input: { features }, inputs: { features } }],
      ['another unknown top-level field', { model: 'mlp', input: { features }, priority: 1 }],
    ];
    for (const [label, body] of cases) await refusedJson(body, 400, 'invalid_input', label);
  });

  it('404 model_not_found and version_not_found', async () => {
    await refusedJson({ model: 'nope', input: { features } }, 404, 'model_not_found', 'unknown model');
    await refusedJson({ model: 'mlp', version: '9', input: { features } }, 404, 'version_not_found', 'unknown version "9"');
    await refusedJson({ model: 'mlp', version: 3, input: { features } }, 404, 'version_not_found', 'unknown version 3');
  });

  it('422 invalid_input for input names and shapes that do not fit the model', async () => {
    const cases: Array<[string, unknown]> = [
      ['an unknown input name besides the right one', { model: 'mlp', input: { features, bogus: [1] } }],
      ['a misspelled input name', { model: 'mlp', input: { feature: features } }],
      ['no inputs at all', { model: 'mlp', input: {} }],
      ['63 values for [64]', mlpWith(features.slice(1))],
      ['65 values for [64]', mlpWith([...features, 0])],
      ['rank 2 for [64]', mlpWith([features])],
      ['a scalar for [64]', mlpWith(0.5)],
      ['null for [64]', mlpWith(null)],
      ['a string for [64]', mlpWith('0.5')],
      ['ocr-cls rank 2 for [3,-1,-1]', { model: 'ocr-cls', input: { x: [[0, 0], [0, 0], [0, 0]] } }],
      ['ocr-cls 4 channels for [3,-1,-1]', { model: 'ocr-cls', input: { x: Array.from({ length: 4 }, () => [[0, 0], [0, 0]]) } }],
      ['ocr-cls a ragged array', { model: 'ocr-cls', input: { x: [[[0, 0], [0, 0]], [[0, 0], [0]], [[0, 0], [0, 0]]] } }],
      ['ocr-cls a ragged row count', { model: 'ocr-cls', input: { x: [[[0, 0], [0, 0]], [[0, 0]], [[0, 0], [0, 0]]] } }],
      ['typed: shape [65]', mlpWith({ datatype: 'FP32', shape: [65], data: [...features, 0] })],
      ['typed: shape is not an array', mlpWith({ datatype: 'FP32', shape: 64, data: features })],
      ['typed: shape has a fraction', mlpWith({ datatype: 'FP32', shape: [64.5], data: features })],
      ['typed: data shorter than the shape', mlpWith({ datatype: 'FP32', shape: [64], data: features.slice(1) })],
      ['typed: neither data nor b64', mlpWith({ datatype: 'FP32', shape: [64] })],
      ['typed: both data and b64', mlpWith({ datatype: 'FP32', shape: [64], data: features, b64: f32b64(features) })],
      ['typed: an unknown field', mlpWith({ datatype: 'FP32', shape: [64], data: features, scale: 1 })],
      ['typed: no datatype', mlpWith({ shape: [64], data: features })],
    ];
    for (const [label, body] of cases) await refusedJson(body, 422, 'invalid_input', label);
  });

  it('422 invalid_input for values of the wrong datatype, strings for numbers and non-finite floats', async () => {
    const cases: Array<[string, unknown]> = [
      ['typed: FP64 for an FP32 input', mlpWith({ datatype: 'FP64', shape: [64], data: features })],
      ['typed: INT64 for an FP32 input', mlpWith({ datatype: 'INT64', shape: [64], data: new Array(64).fill(1) })],
      ['typed: a datatype name that does not exist', mlpWith({ datatype: 'float32', shape: [64], data: features })],
      ['nested: a numeric string', mlpWith(withAt(features, 3, '0.5'))],
      ['nested: null', mlpWith(withAt(features, 10, null))],
      ['nested: a boolean', mlpWith(withAt(features, 63, true))],
      ['nested: an object', mlpWith(withAt(features, 0, {}))],
      ['typed: a string in data', mlpWith({ datatype: 'FP32', shape: [64], data: withAt(features, 5, 'a') })],
      ['nested: 1e39 overflows FP32', mlpWith(withAt(features, 7, 1e39))],
      ['typed: -1e39 overflows FP32', mlpWith({ datatype: 'FP32', shape: [64], data: withAt(features, 7, -1e39) })],
      ['b64: NaN', mlpWith({ datatype: 'FP32', shape: [64], b64: f32b64(withAt(features, 5, NaN) as number[]) })],
      ['b64: Infinity', mlpWith({ datatype: 'FP32', shape: [64], b64: f32b64(withAt(features, 0, Infinity) as number[]) })],
      ['b64: -Infinity', mlpWith({ datatype: 'FP32', shape: [64], b64: f32b64(withAt(features, 63, -Infinity) as number[]) })],
      ['b64: 63 values for [64]', mlpWith({ datatype: 'FP32', shape: [64], b64: f32b64(features.slice(1)) })],
      ['b64: one byte too many', mlpWith({ datatype: 'FP32', shape: [64], b64: Buffer.concat([Buffer.from(Float32Array.from(features).buffer), Buffer.of(0)]).toString('base64') })],
      ['b64: not base64', mlpWith({ datatype: 'FP32', shape: [64], b64: 'not base64!!' })],
      ['b64: unpadded', mlpWith({ datatype: 'FP32', shape: [64], b64: f32b64(features).replace(/=+$/, '').slice(0, -1) })],
      ['b64: not a string', mlpWith({ datatype: 'FP32', shape: [64], b64: 12 })],
      ['INT64: a fraction', { model: 'scale-int', input: { x: [1, 2.5, 3] } }],
      ['INT64: a fraction in typed data', { model: 'scale-int', input: { x: { datatype: 'INT64', shape: [3], data: [1, 2, 3.5] } } }],
      ['INT64: a numeric string', { model: 'scale-int', input: { x: ['1', 2, 3] } }],
      ['INT64: a boolean', { model: 'scale-int', input: { x: [true, 2, 3] } }],
      ['BOOL: numbers', { model: 'bool-not', input: { x: [1, 0, 1] } }],
      ['BOOL: a number among booleans', { model: 'bool-not', input: { x: [true, 0, false] } }],
      ['BOOL: a string', { model: 'bool-not', input: { x: [true, 'false', true] } }],
      ['BOOL: typed data of numbers', { model: 'bool-not', input: { x: { datatype: 'BOOL', shape: [3], data: [1, 0, 1] } } }],
      ['BOOL: b64 byte that is not 0 or 1', { model: 'bool-not', input: { x: { datatype: 'BOOL', shape: [3], b64: Buffer.of(1, 2, 0).toString('base64') } } }],
      ['FP64 scalar: a string', { model: 'scalar-double', input: { v: 'one' } }],
      ['FP64 scalar: NaN bytes', { model: 'scalar-double', input: { v: { datatype: 'FP64', shape: [], b64: Buffer.from(Float64Array.of(NaN).buffer).toString('base64') } } }],
    ];
    for (const [label, body] of cases) await refusedJson(body, 422, 'invalid_input', label);
    // JSON.parse reads 1e400 as Infinity: a finite-looking body that is not finite.
    await refused(`{"model":"mlp","input":{"features":[1e400${',0'.repeat(63)}]}}`, 422, 'invalid_input', '1e400 in the JSON text');
  });

  it('the same kinds of input are accepted when they are right (control)', async () => {
    const good: unknown[] = [
      { model: 'bool-not', input: { x: [true, false, true] } },
      { model: 'bool-not', input: { x: { datatype: 'BOOL', shape: [3], b64: Buffer.of(1, 0, 1).toString('base64') } } },
      { model: 'scale-int', input: { x: [1, -2, 3] } },
      mlpWith({ datatype: 'FP32', shape: [64], b64: f32b64(features) }),
      { model: 'ocr-cls', input: { x: [[[0, 0], [0, 0]], [[0, 0], [0, 0]], [[0, 0], [0, 0]]] } },
      { model: 'mlp', input: { features }, metadata: { note: 'x'.repeat(4000) } },
      { model: 'mlp', input: { features }, webhook: 'https://example.com/hooks/infer' },
    ];
    for (const body of good) expect((await postJob(h.p, body)).res.status, JSON.stringify(body).slice(0, 80)).to.equal(202);
    await h.probe.expectNew(h.before, good.length);
  });

  it('422 webhook_url_not_allowed for URLs that are not http(s) or reach private, loopback or link-local addresses', async () => {
    const urls = [
      'ftp://example.com/hook',
      'file:///etc/passwd',
      'not a url',
      '/relative/hook',
      'http://127.0.0.1/hook',
      'http://127.1.2.3:8080/hook',
      'http://2130706433/hook',
      'http://10.0.0.1/hook',
      'http://172.16.5.4/hook',
      'http://192.168.1.1/hook',
      'http://0.0.0.0/hook',
      'http://[::1]/hook',
      'http://[::ffff:127.0.0.1]/hook',
      'http://[fe80::1]/hook',
      'http://169.254.169.254/latest/meta-data',
      'http://localhost/hook',
      'http://localhost.:3000/hook',
      'http://api.localhost/hook',
    ];
    for (const webhook of urls) await refusedJson({ model: 'mlp', input: { features }, webhook }, 422, 'webhook_url_not_allowed', webhook);
  });

  it('422 invalid_input for metadata over 4 KiB', async () => {
    await refusedJson({ model: 'mlp', input: { features }, metadata: { note: 'x'.repeat(4100) } }, 422, 'invalid_input', 'metadata of 4 KiB+');
    await refusedJson({ model: 'mlp', input: { features }, metadata: { list: new Array(2100).fill(1) } }, 422, 'invalid_input', 'metadata of 4200 bytes of 1s');
  });

  it('404 job_not_found for an unknown job id, on GET and on cancel', async () => {
    for (const id of [randomUUID(), 'not-a-job', 'a'.repeat(200)]) {
      await expectProblem(await h.p.api(`/v1/jobs/${id}`), 404, 'job_not_found');
      await expectProblem(await h.p.api(`/v1/jobs/${id}`, { headers: { prefer: 'wait=1' } }), 404, 'job_not_found');
      await expectProblem(await h.p.api(`/v1/jobs/${id}/cancel`, { method: 'POST' }), 404, 'job_not_found');
    }
  });

  it('401 unauthorized enqueues nothing either', async () => {
    const body = JSON.stringify({ model: 'mlp', input: { features } });
    await expectProblem(await h.p.api('/v1/jobs', { method: 'POST', body, key: null }), 401, 'unauthorized');
    await expectProblem(await h.p.api('/v1/jobs', { method: 'POST', body, key: 'wrong' }), 401, 'unauthorized');
  });
});

describe('validation: limits (body size, queue depth)', () => {
  const h = harness({
    repo: () => tempModelRepo({ mlp: { from: path.join(SHIPPED_MODELS, 'mlp') } }),
    env: { MAX_BODY_BYTES: '2048', MAX_QUEUE_DEPTH: '2' },
    probe: [
      ['mlp', '1'],
      ['mlp', '2'],
    ],
  });

  it('413 payload_too_large for a body over MAX_BODY_BYTES, with or without a Content-Length', async () => {
    const big = JSON.stringify({ model: 'mlp', input: { features }, metadata: { pad: 'x'.repeat(2100) } });
    await expectProblem(await h.p.api('/v1/jobs', { method: 'POST', body: big }), 413, 'payload_too_large');
    // Streamed (chunked): the limit holds while reading, not only from the header.
    const bytes = new TextEncoder().encode(big);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 512) controller.enqueue(bytes.slice(i, i + 512));
        controller.close();
      },
    });
    const chunked = await h.p.api('/v1/jobs', { method: 'POST', body: stream, duplex: 'half' } as RequestInit);
    await expectProblem(chunked, 413, 'payload_too_large');
    await h.probe.expectNothingNew(h.before);
  });

  it('503 queue_full with Retry-After once the queue is over MAX_QUEUE_DEPTH', async () => {
    const body = JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } });
    expect(body.length).to.be.below(2048);
    let accepted = 0;
    const full = await waitUntil(
      async () => {
        const res = await h.p.api('/v1/jobs', { method: 'POST', body });
        if (res.status === 202) {
          accepted++;
          await res.body?.cancel();
          return null;
        }
        return res;
      },
      5000,
      'a submit to answer 503',
    );
    expectRetryAfter(full);
    await expectProblem(full, 503, 'queue_full');
    expect(accepted).to.be.at.least(2);
    // Refused submits enqueued nothing, and it stays refused while the queue is over.
    const again = await h.p.api('/v1/jobs', { method: 'POST', body });
    expectRetryAfter(again);
    await expectProblem(again, 503, 'queue_full');
    await h.probe.expectNew(h.before, accepted);
  });
});

describe('validation: rate limit', () => {
  const h = harness({
    repo: () => tempModelRepo({ mlp: { from: path.join(SHIPPED_MODELS, 'mlp') } }),
    env: { RATE_LIMIT_PER_SECOND: '5' },
    probe: [
      ['mlp', '1'],
      ['mlp', '2'],
    ],
  });

  it('429 rate_limited with Retry-After past RATE_LIMIT_PER_SECOND per key; refused requests enqueue nothing; other keys unaffected', async () => {
    const body = JSON.stringify({ model: 'mlp', input: { features } });
    const answers = await Promise.all(Array.from({ length: 20 }, () => h.p.api('/v1/jobs', { method: 'POST', body })));
    const accepted = answers.filter((r) => r.status === 202);
    const limited = answers.filter((r) => r.status === 429);
    expect(accepted.length + limited.length, `statuses ${answers.map((r) => r.status).join(',')}`).to.equal(20);
    expect(limited.length).to.be.at.least(10);
    expect(accepted.length).to.be.within(1, 10);
    for (const res of limited) {
      expectRetryAfter(res);
      await expectProblem(res, 429, 'rate_limited');
    }
    await Promise.all(accepted.map((r) => r.body?.cancel()));
    const other = await h.p.api('/v1/models', { key: OTHER_TENANT_KEY });
    expect(other.status).to.equal(200);
    expectNoStack(await other.text());
    await h.probe.expectNew(h.before, accepted.length);
  });
});
