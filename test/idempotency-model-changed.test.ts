import path from 'node:path';
import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { SHIPPED_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';

/**
 * docs/api.md, Idempotency-Key: the same key from the same tenant within
 * 24 h returns the first job (200) and enqueues nothing new, whatever became
 * of its model since. A client that lost the first 202 and retries after
 * an admin unloaded the version it pinned must get its job, still queued and
 * still to run, not a 404 that says there is none.
 */
const ADMIN_KEY = 'idempotency-model-changed-admin';
const features = new Array(64).fill(0.5);

describe('Idempotency-Key: a retry after the model changed', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;

  before(async () => {
    repo = tempModelRepo({ mlp: { from: path.join(SHIPPED_MODELS, 'mlp') } });
    // No worker: the jobs stay queued, which is all these need.
    p = await startPlatform({ models: repo.root, worker: false, env: { ADMIN_API_KEYS: `ops:${ADMIN_KEY}` } });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
  });

  const post = (body: unknown, key: string) => p.api('/v1/jobs', { method: 'POST', headers: { 'idempotency-key': key }, body: JSON.stringify(body) });

  it('replays the first job of a version unloaded since; a key with no first job gets the refusal', async () => {
    const body = { model: 'mlp', version: 1, input: { features } };
    const first = await post(body, 'pinned-then-unloaded');
    expect(first.status).to.equal(202);
    const job = (await first.json()) as Job;
    const unload = await p.api('/v1/models/mlp/versions/1/unload', { method: 'POST', key: ADMIN_KEY });
    expect(unload.status).to.equal(202);
    await unload.arrayBuffer();
    expect((await (await p.api(`/v1/jobs/${job.id}`)).json()) as Job).to.include({ id: job.id, status: 'queued' });

    const retry = await post(body, 'pinned-then-unloaded');
    const text = await retry.text();
    expect(retry.status, text).to.equal(200);
    expect(retry.headers.get('idempotent-replayed')).to.equal('true');
    expect((JSON.parse(text) as Job).id).to.equal(job.id);

    // A key no request holds: the body is answered as any other (the version is draining).
    const fresh = await post(body, 'never-used');
    expect(fresh.status, await fresh.clone().text()).to.equal(404);
    expect(((await fresh.json()) as { code: string }).code).to.equal('version_not_found');
    // And that refusal claimed nothing: once the version is back, the key makes a job.
    const load = await p.api('/v1/models/mlp/versions/1/load', { method: 'POST', key: ADMIN_KEY });
    await load.arrayBuffer();
    const again = await post(body, 'never-used');
    expect(again.status, await again.clone().text()).to.equal(202);
    expect(((await again.json()) as Job).id).to.not.equal(job.id);
  });
});
