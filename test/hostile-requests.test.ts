import net from 'node:net';
import zlib from 'node:zlib';
import { expect } from 'chai';
import type { Batch, BatchResultLine } from '@infer/contract';
import { exceedsElementLimit, MAX_TENSOR_ELEMENTS } from '@infer/tensors';
import { threadHeapLimits } from '../apps/gateway/src/batches/parse-thread/parse-thread.js';
import { deepJson } from './helpers/fuzz-requests.js';
import { expectProblem, expectRetryAfter } from './helpers/jobs.js';
import { OTHER_TENANT_KEY, startPlatform, type TestPlatform } from './helpers/platform.js';

const features = new Array<number>(64).fill(0.5);
const jobText = JSON.stringify({ model: 'mlp', input: { features } });
const batchText = JSON.stringify({ model: 'mlp', items: [{ custom_id: 'a', input: { features } }] });
const ndjsonText = `${JSON.stringify({ custom_id: 'a', input: { features } })}\n`;

const CODECS: Record<string, (b: Buffer) => Buffer> = {
  gzip: (b) => zlib.gzipSync(b),
  'x-gzip': (b) => zlib.gzipSync(b),
  deflate: (b) => zlib.deflateSync(b),
  br: (b) => zlib.brotliCompressSync(b),
};

/** The three ways a body comes in: a job, a JSON batch, an NDJSON upload. */
const FORMS = [
  { name: 'POST /v1/jobs', path: '/v1/jobs', type: 'application/json', text: jobText },
  { name: 'POST /v1/batches (JSON)', path: '/v1/batches', type: 'application/json', text: batchText },
  { name: 'POST /v1/batches (NDJSON)', path: '/v1/batches?model=mlp', type: 'application/x-ndjson', text: ndjsonText },
] as const;

describe('hostile requests: every client error is a 4xx problem', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  const MAX_BODY = 64 * 1024;

  before(async () => {
    p = await startPlatform({ worker: false, env: { MAX_BODY_BYTES: String(MAX_BODY) } });
  });
  after(async () => {
    await p?.close();
  });

  const post = (path: string, body: Buffer | string, headers: Record<string, string>) => p.api(path, { method: 'POST', headers, body });

  describe('Content-Encoding, the same on every route that reads a body', () => {
    for (const form of FORMS) {
      it(`${form.name}: gzip, x-gzip, deflate, br and identity are read`, async () => {
        for (const [coding, encode] of Object.entries(CODECS)) {
          const res = await post(form.path, encode(Buffer.from(form.text)), { 'content-type': form.type, 'content-encoding': coding });
          expect(res.status, `${coding}: ${await res.clone().text()}`).to.equal(202);
        }
        for (const coding of ['identity', 'IDENTITY', ' Identity ']) {
          expect((await post(form.path, form.text, { 'content-type': form.type, 'content-encoding': coding })).status, coding).to.equal(202);
        }
      });

      it(`${form.name}: any other coding is 415 unsupported_media_type`, async () => {
        for (const coding of ['zstd', 'compress', 'gzip, gzip', 'identity, gzip', 'br;q=1', '*', 'x'.repeat(500)]) {
          const problem = await expectProblem(await post(form.path, form.text, { 'content-type': form.type, 'content-encoding': coding }), 415, 'unsupported_media_type');
          expect(problem.detail.length, 'the header is not echoed whole').to.be.below(200);
        }
      });

      it(`${form.name}: bytes that do not decode are 400 invalid_json`, async () => {
        for (const [coding, encode] of Object.entries(CODECS)) {
          const whole = encode(Buffer.from(form.text));
          for (const [what, body] of [
            ['garbage', Buffer.from('this is not compressed at all')],
            ['cut off', whole.subarray(0, Math.floor(whole.length / 2))],
          ] as const) {
            const problem = await expectProblem(await post(form.path, body, { 'content-type': form.type, 'content-encoding': coding }), 400, 'invalid_json');
            expect(problem.detail, `${coding} ${what}`).to.include(`not valid ${coding === 'x-gzip' ? 'gzip' : coding}`);
          }
        }
      });
    }

    it('a compressed bomb is refused at the limit, counting decoded bytes (JSON forms: 413)', async () => {
      const bomb = zlib.gzipSync(Buffer.alloc(50 * 1024 * 1024, 0x20));
      expect(bomb.length).to.be.below(MAX_BODY);
      for (const path of ['/v1/jobs', '/v1/batches']) {
        await expectProblem(await post(path, bomb, { 'content-type': 'application/json', 'content-encoding': 'gzip' }), 413, 'payload_too_large');
      }
    });

    it('an NDJSON line that inflates past the per-line limit fails as an item; the others run', async () => {
      const body = Buffer.concat([Buffer.from(ndjsonText), Buffer.from('{"input":{"features":['), Buffer.alloc(5 * MAX_BODY, '0,'), Buffer.from('0]}}\n'), Buffer.from(ndjsonText)]);
      const res = await post('/v1/batches?model=mlp', zlib.gzipSync(body), { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' });
      const batch = (await res.json()) as Batch;
      expect(res.status).to.equal(202);
      expect(batch.request_counts).to.include({ total: 3, failed: 1 });
    });
  });

  describe('malformed percent-encoding in a path is 400 invalid_input, on every route with an id', () => {
    const routes: Array<[string, (id: string) => string]> = [
      ['GET', (id) => `/v1/jobs/${id}`],
      ['POST', (id) => `/v1/jobs/${id}/cancel`],
      ['GET', (id) => `/v1/jobs/${id}/webhook_deliveries`],
      ['GET', (id) => `/v1/batches/${id}`],
      ['GET', (id) => `/v1/batches/${id}/results`],
      ['POST', (id) => `/v1/batches/${id}/cancel`],
      ['GET', (id) => `/v1/batches/${id}/webhook_deliveries`],
      ['GET', (id) => `/v1/models/${id}`],
      ['GET', (id) => `/v1/webhook_deliveries/${id}`],
      ['POST', (id) => `/v1/webhook_deliveries/${id}/resend`],
    ];
    it('%zz, %, %ff (not UTF-8), %c0%af (overlong)', async () => {
      for (const [method, path] of routes) {
        for (const id of ['%zz', '%', '%ff', '%c0%af', 'a%2']) {
          const problem = await expectProblem(await p.api(path(id), { method }), 400, 'invalid_input');
          expect(problem.detail).to.equal('The path is not valid percent-encoded UTF-8');
        }
      }
    });

    it('well-formed escapes are decoded and looked up: traversal and NUL are just ids that do not exist', async () => {
      await expectProblem(await p.api('/v1/jobs/..%2f..%2fetc'), 404, 'job_not_found');
      await expectProblem(await p.api('/v1/jobs/%00'), 404, 'job_not_found');
      await expectProblem(await p.api('/v1/batches/..%2F..%2Fetc%2Fpasswd'), 404, 'batch_not_found');
      await expectProblem(await p.api('/v1/models/%E2%80%A8'), 404, 'model_not_found');
    });
  });

  describe('deep nesting is a 422, wherever a body is walked or printed', () => {
    it('batch metadata nested 10,000 levels (and 33): 422, like a job’s', async () => {
      for (const depth of [10_000, 33]) {
        const body = `{"model":"mlp","items":[{"input":{"features":[${features}]}}],"metadata":{"m":${deepJson(depth, 'object')}}}`;
        const problem = await expectProblem(await post('/v1/batches', body, { 'content-type': 'application/json' }), 422, 'invalid_input');
        expect(problem.detail).to.match(/nested deeper than 32 levels/);
      }
      const fits = `{"model":"mlp","items":[{"input":{"features":[${features}]}}],"metadata":{"m":${deepJson(30, 'object')}}}`;
      expect((await post('/v1/batches', fits, { 'content-type': 'application/json' })).status).to.equal(202);
    });

    it('a value nested 10,000 levels inside a tensor: 422 naming the value, not a stack overflow', async () => {
      const rest = ',0.5'.repeat(63);
      for (const deep of [deepJson(10_000, 'object'), deepJson(10_000, 'array')]) {
        for (const body of [`{"model":"mlp","input":{"features":[${deep}${rest}]}}`, `{"model":"mlp","input":{"features":{"datatype":"FP32","shape":[64],"data":[${deep}${rest}]}}}`]) {
          const problem = await expectProblem(await post('/v1/jobs', body, {}), 422, 'invalid_input');
          // (A nested array's shape is read down its first elements: past 16 levels it is refused for its rank.)
          expect(problem.detail).to.match(/value an? (object|array) at index 0|nested deeper than 16 levels/);
        }
      }
    });

    it('batch items nested thousands of levels fail as items (JSON and NDJSON)', async () => {
      const deep = `{"input":{"features":[${deepJson(10_000, 'array')}${',0.5'.repeat(63)}]}}`;
      for (const res of [
        // Within MAX_BODY_BYTES (64 KiB here): 10,000 levels of arrays and 6,000 of objects.
        await post('/v1/batches', `{"model":"mlp","items":[${deep},${deepJson(6_000, 'object')}]}`, { 'content-type': 'application/json' }),
        await post('/v1/batches?model=mlp', `${deep}\n${deepJson(6_000, 'object')}\n`, { 'content-type': 'application/x-ndjson' }),
      ]) {
        const batch = (await res.json()) as Batch;
        expect(res.status, JSON.stringify(batch)).to.equal(202);
        expect(batch.request_counts).to.include({ total: 2, failed: 2 });
      }
    });
  });

  describe('sizes a client controls are bounded', () => {
    it('a declared shape over 2^28 elements, or hiding a huge dimension behind a 0, is 422 before anything is allocated', async () => {
      for (const shape of [[3, 1e9, 1e9], [3, 0, 1e15], [3, 2 ** 14, 2 ** 14 + 1]]) {
        for (const payload of [{ data: [1] }, { b64: 'AAAA' }]) {
          const body = JSON.stringify({ model: 'ocr-cls', input: { x: { datatype: 'FP32', shape, ...payload } } });
          const problem = await expectProblem(await post('/v1/jobs', body, {}), 422, 'invalid_input');
          expect(problem.detail, JSON.stringify(shape)).to.include(`declares more than ${MAX_TENSOR_ELEMENTS} elements`);
        }
      }
      expect(exceedsElementLimit([2 ** 14, 2 ** 14])).to.equal(false);
      expect(exceedsElementLimit([0, 2 ** 28 + 1])).to.equal(true);
    });

    it('a b64 of the wrong length is refused from its length, before it is decoded', async () => {
      const problem = await expectProblem(
        await post('/v1/jobs', JSON.stringify({ model: 'mlp', input: { features: { datatype: 'FP32', shape: [64], b64: 'AAAA'.repeat(100) } } }), {}),
        422,
        'invalid_input',
      );
      expect(problem.detail).to.include('"b64" holds 300 bytes');
    });

    it('an answer quotes at most 1 KiB of what the client sent', async () => {
      const problem = await expectProblem(await post('/v1/jobs', JSON.stringify({ model: 'mlp', input: { features }, ['k'.repeat(50_000)]: 1 }), {}), 400, 'invalid_input');
      expect(problem.detail.length).to.be.at.most(1024);
    });

    it('a batch item’s error quotes at most 1 KiB of the item', async () => {
      const res = await post('/v1/batches', JSON.stringify({ model: 'mlp', items: [{ input: { features, ['n'.repeat(50_000)]: [1] } }] }), { 'content-type': 'application/json' });
      const batch = (await res.json()) as Batch;
      expect(res.status).to.equal(202);
      await p.api(`/v1/batches/${batch.id}/cancel`, { method: 'POST' });
      const lines = (await (await p.api(`/v1/batches/${batch.id}/results`)).text()).trim().split('\n').map((l) => JSON.parse(l) as BatchResultLine);
      expect(lines[0]!.error!.message.length).to.be.at.most(1024);
    });

    it('the parse thread’s heap fits what JSON.parse makes of the longest line allowed', () => {
      // Measured worst cases on Node 20: nested empty arrays 29 bytes of heap per byte of text, empty objects 22.
      for (const maxLine of [64 * 1024, 10 * 1024 * 1024, 100 * 1024 * 1024]) {
        expect(threadHeapLimits(maxLine).maxOldGenerationSizeMb * 1024 * 1024).to.be.at.least(30 * maxLine);
      }
    });

    it('request line and headers over 16 KiB: Node answers 431 itself, and the gateway carries on', async () => {
      for (const [path, headers] of [
        [`/v1/jobs/${'x'.repeat(20_000)}`, {}],
        ['/v1/models', { 'x-big': 'y'.repeat(20_000) }],
      ] as const) {
        const res = await p.api(path, { headers });
        expect(res.status).to.equal(431);
        expect(res.headers.get('connection')).to.equal('close');
        expect(await res.text()).to.equal('');
      }
      expect((await p.api('/healthz', { key: null })).status).to.equal(200);
    });

    it('bytes that are not HTTP: Node answers 400 itself, and the gateway carries on', async () => {
      const port = Number(new URL(p.baseUrl).port);
      const answer = await new Promise<string>((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        let raw = '';
        socket.on('data', (d: Buffer) => (raw += d.toString('latin1')));
        socket.on('close', () => resolve(raw));
        socket.write('GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: a\u0000b\r\nConnection: close\r\n\r\n');
      });
      expect(answer).to.match(/^HTTP\/1\.1 400 Bad Request\r\n/);
      expect((await p.api('/healthz', { key: null })).status).to.equal(200);
    });
  });
});

describe('hostile requests: TENANT_MAX_OPEN_BATCHES', function () {
  this.timeout(30_000);
  let p: TestPlatform;

  before(async () => {
    // No worker: a batch stays queued, so open, until it is canceled.
    p = await startPlatform({ worker: false, env: { TENANT_MAX_OPEN_BATCHES: '2' } });
  });
  after(async () => {
    await p?.close();
  });

  const upload = (key?: string) =>
    p.api('/v1/batches?model=mlp', { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: ndjsonText, ...(key ? { key } : {}) });

  it('a tenant at its limit gets 429 quota_exceeded with Retry-After; a slot frees when a batch ends; other tenants are not counted', async () => {
    const first = (await (await upload()).json()) as Batch;
    expect((await upload()).status).to.equal(202);
    const refused = await upload();
    expectRetryAfter(refused);
    expect((await expectProblem(refused, 429, 'quota_exceeded')).detail).to.include('2 batches open');
    // The JSON form counts the same slots.
    await expectProblem(await p.api('/v1/batches', { method: 'POST', body: batchText }), 429, 'quota_exceeded');
    // Another tenant has slots of its own.
    expect((await upload(OTHER_TENANT_KEY)).status).to.equal(202);

    // An ended batch (here canceled) no longer counts: the next upload finds it ended and takes its slot.
    expect((await p.api(`/v1/batches/${first.id}/cancel`, { method: 'POST' })).status).to.equal(200);
    expect((await upload()).status).to.equal(202);
    await expectProblem(await upload(), 429, 'quota_exceeded');
  });

  it('an upload that fails gives its slot back', async () => {
    // Fill up, cancel both, then fail uploads in a row: each must release what it took.
    const list = (await (await p.api('/v1/batches?limit=100')).json()) as { data: Batch[] };
    for (const b of list.data.filter((b) => b.status === 'queued')) await p.api(`/v1/batches/${b.id}/cancel`, { method: 'POST' });
    for (let i = 0; i < 5; i++) {
      const empty = await p.api('/v1/batches?model=mlp', { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: '\n\n' });
      await expectProblem(empty, 400, 'invalid_input');
    }
    expect((await upload()).status).to.equal(202);
    expect((await upload()).status).to.equal(202);
  });
});
