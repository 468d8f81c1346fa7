import { expect } from 'chai';
import path from 'node:path';
import { startPlatform, type TestPlatform, FIXTURE_MODELS, SHIPPED_MODELS, OTHER_TENANT_KEY } from './helpers/platform.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { expectProblem, postJob } from './helpers/jobs.js';

/** Contract checks of the jobs and models routes beside the main paths: racing cancels, prototype names, the Express fallback, object-form tensors. */
describe('jobs and models routes: edges of the contract', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let repo: TempModelRepo;
  const features = new Array(64).fill(0.5);
  before(async () => {
    repo = tempModelRepo({
      mlp: { from: path.join(SHIPPED_MODELS, 'mlp') },
      'scale-int': { from: path.join(FIXTURE_MODELS, 'scale-int') },
    });
    // No worker: jobs stay queued, so cancels and replays see a queued job.
    p = await startPlatform({ models: repo.root, worker: false });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
  });

  it('two cancels of one queued job at once: one 200 canceled, the other 409 conflict', async () => {
    const { job } = await postJob(p, { model: 'mlp', input: { features } });
    const answers = await Promise.all([1, 2].map(() => p.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' })));
    const statuses = answers.map((r) => r.status).sort();
    expect(statuses).to.deep.equal([200, 409]);
    const ok = answers.find((r) => r.status === 200)!;
    expect(((await ok.json()) as { status: string }).status).to.equal('canceled');
    await expectProblem(answers.find((r) => r.status === 409)!, 409, 'conflict');
  });

  it('model names that are Object.prototype members are 404 model_not_found, on GET and on submit', async () => {
    for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
      await expectProblem(await p.api(`/v1/models/${name}`), 404, 'model_not_found');
      await expectProblem(await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: name, input: {} }) }), 404, 'model_not_found');
    }
  });

  it('the Express fallback (a differently cased path) answers as the dispatch does: replay, 400, cancel 409', async () => {
    const first = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features } }), headers: { 'idempotency-key': 'case-fallback-1' } });
    expect(first.status).to.equal(202);
    const { id } = (await first.json()) as { id: string };
    const replay = await p.api('/V1/JOBS', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features } }), headers: { 'idempotency-key': 'case-fallback-1' } });
    expect(replay.status).to.equal(200);
    expect(replay.headers.get('idempotent-replayed')).to.equal('true');
    expect(replay.headers.get('location')).to.equal(`/v1/jobs/${id}`);
    expect(((await replay.json()) as { id: string }).id).to.equal(id);
    await expectProblem(await p.api('/V1/JOBS', { method: 'POST', body: '{' }), 400, 'invalid_json');
    await expectProblem(await p.api('/V1/JOBS', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features } }), headers: { 'cancel-after': 'soon' } }), 400, 'invalid_input');
    expect((await p.api(`/V1/JOBS/${id}/CANCEL`, { method: 'POST' })).status).to.equal(200);
    await expectProblem(await p.api(`/V1/JOBS/${id}/CANCEL`, { method: 'POST' }), 409, 'conflict');
    await expectProblem(await p.api(`/v1/jobs/${id}/cancel`, { method: 'POST', key: OTHER_TENANT_KEY }), 404, 'job_not_found');
  });

  it('object-form tensors: a wrong datatype, a bad shape, both or neither of data/b64 are 422 invalid_input', async () => {
    const bad = [
      { datatype: 'INT32', shape: [3], data: [1, 2, 3] },
      { datatype: 'INT64', shape: ['3'], data: [1, 2, 3] },
      { datatype: 'INT64', shape: [-1], data: [1, 2, 3] },
      { datatype: 'INT64', shape: [3], data: [1, 2, 3], b64: Buffer.alloc(24).toString('base64') },
      { datatype: 'INT64', shape: [3] },
      { datatype: 'INT64', data: [1, 2, 3] },
      { datatype: 'INT64', shape: [3], data: ['1', '2', '3'] },
    ];
    for (const x of bad) {
      await expectProblem(await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'scale-int', input: { x } }) }), 422, 'invalid_input');
    }
    const ok = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'scale-int', input: { x: { datatype: 'INT64', shape: [3], b64: Buffer.alloc(24).toString('base64') } } }) });
    expect(ok.status).to.equal(202);
  });
});
