import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { Job, ModelInfo } from '@infer/contract';
import { mlpReference, type MlpVersion } from '../scripts/build-models.js';
import { maxAbsDiff } from './helpers/batches.js';
import { expectProblem, flatten, getJob, nestedShape, pollJob, postJob, RFC3339, runJob } from './helpers/jobs.js';
import { inForm, modelFile, OrtReference, seededFloats, TENSOR_FORMS } from './helpers/ort-reference.js';
import { FIXTURE_MODELS, OTHER_TENANT_KEY, startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

const TOLERANCE = 1e-5;

/** Every field docs/api.md lists on a Job, with the types it gives them. */
function expectJobShape(job: Job): void {
  expect(job).to.include.all.keys(
    'id',
    'object',
    'model',
    'version',
    'status',
    'created_at',
    'started_at',
    'completed_at',
    'output',
    'error',
    'metadata',
    'metrics',
    'urls',
  );
  expect(job.object).to.equal('job');
  expect(job.id).to.be.a('string').and.match(/^[A-Za-z0-9_-]{22,}$/);
  expect(job.created_at).to.match(RFC3339);
  expect(job.urls).to.deep.equal({ get: `/v1/jobs/${job.id}`, cancel: `/v1/jobs/${job.id}/cancel` });
  if (job.started_at !== null) expect(job.started_at).to.match(RFC3339);
  if (job.completed_at !== null) expect(job.completed_at).to.match(RFC3339);
}

function expectMetrics(job: Job, maxBatchSize: number): void {
  expect(job.metrics).to.be.an('object');
  const m = job.metrics!;
  expect(m).to.have.all.keys('queue_ms', 'inference_ms', 'batch_size');
  expect(m.queue_ms).to.be.a('number').and.at.least(0);
  expect(m.inference_ms).to.be.a('number').and.at.least(0);
  expect(Number.isInteger(m.batch_size) && m.batch_size >= 1 && m.batch_size <= maxBatchSize, `batch_size ${m.batch_size}`).to.equal(true);
}

function expectClose(actual: unknown, expected: ArrayLike<number>, what: string): void {
  const got = flatten(actual).map(Number);
  expect(got.length, `${what}: length`).to.equal(expected.length);
  const diff = maxAbsDiff(got, expected);
  expect(diff, `${what}: max abs diff ${diff}`).to.be.at.most(TOLERANCE);
}

describe('jobs: shipped models through the platform', () => {
  let p: TestPlatform;
  const ref = new OrtReference();
  before(async () => {
    p = await startPlatform();
  });
  after(async () => {
    await ref.close();
    await p.close();
  });

  describe('outputs equal direct ONNX Runtime inference, in all three tensor forms', () => {
    const cases: Array<{ label: string; version: string | number | undefined; runs: MlpVersion }> = [
      { label: 'pinned to version "1"', version: '1', runs: 1 },
      { label: 'pinned to version 2 (a JSON number)', version: 2, runs: 2 },
      { label: 'without a version (the default, the highest: 2)', version: undefined, runs: 2 },
    ];
    cases.forEach(({ label, version, runs }, k) => {
      it(`mlp ${label}`, async () => {
        const features = seededFloats(64, 100 + k);
        const expected = (await ref.runFp32(modelFile('mlp', String(runs)), 'features', features, [1, 64])).probabilities!;
        const jobs = await Promise.all(
          TENSOR_FORMS.map((form) =>
            runJob(p, { model: 'mlp', ...(version === undefined ? {} : { version }), input: { features: inForm(form, 'FP32', [64], features) } }),
          ),
        );
        jobs.forEach((job, i) => {
          const what = `mlp v${runs}, ${TENSOR_FORMS[i]} form`;
          expect(job.status, what).to.equal('succeeded');
          expect(job.version, what).to.equal(String(runs));
          expect(nestedShape(job.output!.probabilities), what).to.deep.equal([4]);
          expectClose(job.output!.probabilities, expected, what);
        });
      });
    });

    it('mlp versions really differ, and the reference agrees with the models as built', async () => {
      const features = seededFloats(64, 7);
      const [v1, v2] = await Promise.all(
        (['1', '2'] as const).map(async (v) => (await ref.runFp32(modelFile('mlp', v), 'features', features, [1, 64])).probabilities!),
      );
      expect(maxAbsDiff(v1!, mlpReference(1, features))).to.be.at.most(1e-5);
      expect(maxAbsDiff(v2!, mlpReference(2, features))).to.be.at.most(1e-5);
      // Otherwise version pinning would be invisible in the tests above.
      expect(maxAbsDiff(v1!, v2!)).to.be.greaterThan(1e-3);
      const info = (await (await p.api('/v1/models/mlp')).json()) as ModelInfo;
      expect(info.versions).to.deep.equal(['1', '2']);
      expect(info.default_version).to.equal('2');
    });

    it('ocr-cls at widths 192 and 100, every form, submitted together (grouped by shape)', async () => {
      const widths = [192, 100];
      const inputs = widths.map((w, i) => ({ w, data: seededFloats(3 * 48 * w, 200 + i, 0, 1) }));
      const expected = await Promise.all(
        inputs.map(async ({ w, data }) => (await ref.runFp32(modelFile('ocr-cls', '1'), 'x', data, [1, 3, 48, w]))['softmax_0.tmp_0']!),
      );
      const submitted = inputs.flatMap(({ w, data }, i) =>
        TENSOR_FORMS.map((form) => ({ what: `ocr-cls [3,48,${w}] ${form} form`, i, body: { model: 'ocr-cls', input: { x: inForm(form, 'FP32', [3, 48, w], data) } } })),
      );
      const jobs = await Promise.all(submitted.map((s) => runJob(p, s.body)));
      jobs.forEach((job, k) => {
        const { what, i } = submitted[k]!;
        expect(job.status, what).to.equal('succeeded');
        expect(job.version).to.equal('1');
        expect(nestedShape(job.output!['softmax_0.tmp_0']), what).to.deep.equal([2]);
        expectClose(job.output!['softmax_0.tmp_0'], expected[i]!, what);
      });
      // The two widths give different answers, so a mixed-up result would not pass.
      expect(maxAbsDiff(expected[0]!, expected[1]!)).to.be.greaterThan(TOLERANCE);
    });
  });

  describe('the job over HTTP', () => {
    it('decodes a large base64 image from the body bytes, and echoes metadata that looks like one as sent', async () => {
      const image = seededFloats(3 * 48 * 192, 301);
      const b64 = Buffer.from(image.buffer, image.byteOffset, image.byteLength).toString('base64');
      const metadata = { b64: b64.slice(0, 4000), note: 'a "b64" member in metadata is not a tensor' };
      const job = await runJob(p, { model: 'ocr-cls', input: { x: { datatype: 'FP32', shape: [3, 48, 192], b64 } }, metadata });
      expect(job.status).to.equal('succeeded');
      expect(job.metadata).to.deep.equal(metadata);
      const expected = (await ref.runFp32(modelFile('ocr-cls', '1'), 'x', image, [1, 3, 48, 192]))['softmax_0.tmp_0']!;
      expectClose((job.output as Record<string, unknown>)['softmax_0.tmp_0'], expected, 'lifted image');
      // A forged placeholder is just a string that is not base64.
      const forged = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'ocr-cls', input: { x: { datatype: 'FP32', shape: [3, 48, 192], b64: '\u0000x:0' } } }) });
      await expectProblem(forged, 422, 'invalid_input');
    });

    it('answers 202 with Location and a queued Job, then polling GET reaches succeeded with the full Job shape', async () => {
      const metadata = { order: 'A-17', nested: { n: 1, list: [1, 'two', null, true] }, text: 'żółw 🐢' };
      const features = seededFloats(64, 300);
      const { res, job } = await postJob(p, { model: 'mlp', input: { features: Array.from(features) }, metadata });
      expect(res.status).to.equal(202);
      expect(res.headers.get('location')).to.equal(`/v1/jobs/${job.id}`);
      expectJobShape(job);
      expect(job).to.include({ model: 'mlp', version: '2', status: 'queued', started_at: null, completed_at: null, output: null, error: null, metrics: null });
      expect(job.metadata).to.deep.equal(metadata);

      const ended = await pollJob(p, job.id);
      expectJobShape(ended);
      expect(ended).to.include({ id: job.id, model: 'mlp', version: '2', status: 'succeeded', error: null, created_at: job.created_at });
      expect(ended.metadata).to.deep.equal(metadata);
      const created = Date.parse(ended.created_at);
      const started = Date.parse(ended.started_at!);
      const completed = Date.parse(ended.completed_at!);
      expect(created <= started && started <= completed, `${ended.created_at} ≤ ${ended.started_at} ≤ ${ended.completed_at}`).to.equal(true);
      expectMetrics(ended, 64);
      const expected = (await ref.runFp32(modelFile('mlp', '2'), 'features', features, [1, 64])).probabilities!;
      expectClose(ended.output!.probabilities, expected, 'polled job');
      // The Location is where the job lives.
      expect((await getJob(p, res.headers.get('location')!.split('/').pop()!)).id).to.equal(job.id);
    });

    it('Prefer: wait on POST answers 200 with the ended Job', async () => {
      const { res, job } = await postJob(p, { model: 'mlp', version: '1', input: { features: new Array(64).fill(0.5) }, metadata: { k: 'v' } }, { wait: 10 });
      expect(res.status).to.equal(200);
      expectJobShape(job);
      expect(job.status).to.equal('succeeded');
      expect(job.completed_at).to.match(RFC3339);
      expect(job.metadata).to.deep.equal({ k: 'v' });
      expectMetrics(job, 64);
      expect(nestedShape(job.output!.probabilities)).to.deep.equal([4]);
    });

    it('refuses to cancel a job that has ended: 409 conflict, and the job stays succeeded', async () => {
      const job = await runJob(p, { model: 'mlp', input: { features: new Array(64).fill(0.1) } });
      await expectProblem(await p.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' }), 409, 'conflict');
      const again = await getJob(p, job.id);
      expect(again.status).to.equal('succeeded');
      expect(again.output).to.deep.equal(job.output);
    });

    it("answers another tenant's job id with 404 job_not_found, exactly as an id that never existed", async () => {
      const job = await runJob(p, { model: 'mlp', input: { features: new Array(64).fill(0.2) } });
      const unknownId = randomUUID();
      const cases: Array<[string, RequestInit]> = [
        ['', {}],
        ['', { headers: { prefer: 'wait=5' } }],
        ['/cancel', { method: 'POST' }],
      ];
      for (const [suffix, init] of cases) {
        const theirs = await expectProblem(await p.api(`/v1/jobs/${job.id}${suffix}`, { ...init, key: OTHER_TENANT_KEY }), 404, 'job_not_found');
        const never = await expectProblem(await p.api(`/v1/jobs/${unknownId}${suffix}`, init), 404, 'job_not_found');
        // Only the id in the detail may differ: nothing tells the caller the id exists.
        expect({ ...theirs, detail: theirs.detail.replaceAll(job.id, '<id>') }).to.deep.equal({ ...never, detail: never.detail.replaceAll(unknownId, '<id>') });
      }
      // The owner still sees it, untouched by the other tenant's cancel.
      expect((await getJob(p, job.id)).status).to.equal('succeeded');
    });

    it('answers 401 unauthorized problem+json for a missing, unknown or malformed API key', async () => {
      const job = await runJob(p, { model: 'mlp', input: { features: new Array(64).fill(0.3) } });
      const body = JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0) } });
      const requests: Array<[string, RequestInit]> = [
        ['/v1/models', {}],
        ['/v1/models/mlp', {}],
        ['/v1/jobs', { method: 'POST', body }],
        [`/v1/jobs/${job.id}`, {}],
        [`/v1/jobs/${job.id}/cancel`, { method: 'POST' }],
      ];
      for (const [path, init] of requests) {
        await expectProblem(await p.api(path, { ...init, key: null }), 401, 'unauthorized');
        await expectProblem(await p.api(path, { ...init, key: 'not-a-key' }), 401, 'unauthorized');
        await expectProblem(await p.api(path, { ...init, key: null, headers: { authorization: 'Basic dGVzdC1rZXktYTo=' } }), 401, 'unauthorized');
      }
    });
  });
});

describe('jobs: queued jobs (the worker starts late)', () => {
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p.close();
  });

  const body = (fill: number) => ({ model: 'mlp', input: { features: new Array(64).fill(fill) } });

  it('cancels a queued job: 200 canceled, then 409 conflict; another tenant cannot', async () => {
    const { job } = await postJob(p, body(0.4));
    expect(job.status).to.equal('queued');
    await expectProblem(await p.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST', key: OTHER_TENANT_KEY }), 404, 'job_not_found');
    expect((await getJob(p, job.id)).status).to.equal('queued');

    const res = await p.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
    expect(res.status).to.equal(200);
    const canceled = (await res.json()) as Job;
    expectJobShape(canceled);
    expect(canceled).to.include({ id: job.id, status: 'canceled', output: null });
    expect(canceled.completed_at).to.match(RFC3339);

    await expectProblem(await p.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' }), 409, 'conflict');
    expect((await getJob(p, job.id)).status).to.equal('canceled');
  });

  it('holds POST and GET with Prefer: wait=1 for about a second when the job does not end, then answers it queued', async () => {
    const { job } = await postJob(p, body(0.6));
    const timed = async <T>(work: Promise<T>): Promise<[T, number]> => {
      const started = performance.now();
      const value = await work;
      return [value, performance.now() - started];
    };
    const [[post, postMs], [get, getMs]] = await Promise.all([
      timed(postJob(p, body(0.5), { wait: 1 })),
      timed(p.api(`/v1/jobs/${job.id}`, { headers: { prefer: 'wait=1' } })),
    ]);
    expect(post.res.status).to.equal(202);
    expect(post.job.status).to.equal('queued');
    expect(postMs).to.be.at.least(950);
    expect(get.status).to.equal(200);
    expect(((await get.json()) as Job).status).to.equal('queued');
    expect(getMs).to.be.at.least(950);
  });

  it('long poll: GET with Prefer: wait=10 answers as soon as the job ends (by event, not timeout); a canceled job never runs', async () => {
    const { job } = await postJob(p, body(0.7));
    const { job: doomed } = await postJob(p, body(0.8));
    expect((await p.api(`/v1/jobs/${doomed.id}/cancel`, { method: 'POST' })).status).to.equal(200);
    expect((await getJob(p, job.id)).status).to.equal('queued');

    const waitersBefore = p.gateway.waiters.size;
    const polling = p.api(`/v1/jobs/${job.id}`, { headers: { prefer: 'wait=10' } });
    await waitUntil(() => p.gateway.waiters.size > waitersBefore, 5000, 'the long poll to start waiting');
    const workerStarted = performance.now();
    await p.startWorker();
    const res = await polling;
    const elapsed = performance.now() - workerStarted;
    expect(res.status).to.equal(200);
    const ended = (await res.json()) as Job;
    expect(ended.status).to.equal('succeeded');
    expect(nestedShape(ended.output!.probabilities)).to.deep.equal([4]);
    expect(elapsed, `answered ${Math.round(elapsed)} ms after the worker started`).to.be.below(5000);

    // Every job queued before the canceled one's has run by now; it still has not.
    const after = await getJob(p, doomed.id);
    expect(after).to.include({ status: 'canceled', output: null, metrics: null, started_at: null });
  });
});

describe('jobs: fixture models (datatypes, scalars, models that are not batched)', () => {
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ models: FIXTURE_MODELS });
  });
  after(async () => {
    await p.close();
  });

  it('add-fixed is not batched: max_batch_size 0, full [2,3] shapes in and out', async () => {
    const info = (await (await p.api('/v1/models/add-fixed')).json()) as ModelInfo;
    expect(info.max_batch_size).to.equal(0);
    expect(info.inputs).to.deep.equal([
      { name: 'a', datatype: 'FP32', shape: [2, 3] },
      { name: 'b', datatype: 'FP32', shape: [2, 3] },
    ]);
    expect(info.outputs).to.deep.equal([{ name: 'sum', datatype: 'FP32', shape: [2, 3] }]);

    const a = seededFloats(6, 1);
    const b = seededFloats(6, 2);
    const sum = a.map((v, i) => v + b[i]!);
    const jobs = await Promise.all(
      TENSOR_FORMS.map((form) => runJob(p, { model: 'add-fixed', input: { a: inForm(form, 'FP32', [2, 3], a), b: inForm(form, 'FP32', [2, 3], b) } })),
    );
    for (const job of jobs) {
      expect(job.status).to.equal('succeeded');
      expect(nestedShape(job.output!.sum)).to.deep.equal([2, 3]);
      expectClose(job.output!.sum, sum, 'add-fixed sum');
      expect(job.metrics!.batch_size).to.equal(1);
    }
    // One instance's worth ([3]) is not what a model that is not batched takes.
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'add-fixed', input: { a: [1, 2, 3], b: [1, 2, 3] } }) });
    await expectProblem(res, 422, 'invalid_input');
  });

  it('scale-int: INT64 in, INT64 out as JSON numbers and BOOL out as JSON booleans', async () => {
    const x = BigInt64Array.from([-3n, 0n, 2n ** 40n]);
    const jobs = await Promise.all(TENSOR_FORMS.map((form) => runJob(p, { model: 'scale-int', input: { x: inForm(form, 'INT64', [3], x) } })));
    for (const job of jobs) {
      expect(job.status).to.equal('succeeded');
      expect(job.output).to.deep.equal({ y: [-6, 0, 2 ** 41], flag: [false, false, true] });
    }
  });

  it('scalar-double: a scalar is a bare number in and out', async () => {
    const inputs: unknown[] = [1.25, { datatype: 'FP64', shape: [], data: [1.25] }, { datatype: 'FP64', shape: [], b64: Buffer.from(Float64Array.of(1.25).buffer).toString('base64') }];
    const jobs = await Promise.all(inputs.map((v) => runJob(p, { model: 'scalar-double', input: { v } })));
    for (const job of jobs) {
      expect(job.status).to.equal('succeeded');
      expect(job.output).to.deep.equal({ w: 3.75 });
    }
    const info = (await (await p.api('/v1/models/scalar-double')).json()) as ModelInfo;
    expect(info.inputs).to.deep.equal([{ name: 'v', datatype: 'FP64', shape: [] }]);
    expect(info.max_batch_size).to.equal(0);
    // A one-element array is not a scalar.
    await expectProblem(await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'scalar-double', input: { v: [1.25] } }) }), 422, 'invalid_input');
  });

  it('seq-sum: concurrent jobs of different lengths each get their own sum (instances grouped by shape)', async () => {
    const seqs = Array.from({ length: 16 }, (_, i) => seededFloats(1 + (i % 8), 50 + i));
    const jobs = await Promise.all(seqs.map((seq, i) => runJob(p, { model: 'seq-sum', input: { seq: inForm(TENSOR_FORMS[i % 3]!, 'FP32', [seq.length], seq) } })));
    jobs.forEach((job, i) => {
      expect(job.status, `seq of ${seqs[i]!.length}`).to.equal('succeeded');
      expect(nestedShape(job.output!.total)).to.deep.equal([1]);
      expectClose(job.output!.total, [seqs[i]!.reduce((s, v) => s + v, 0)], `seq of ${seqs[i]!.length}`);
      expect(job.metrics!.batch_size).to.be.within(1, 8);
    });
  });
});
