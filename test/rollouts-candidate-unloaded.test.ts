import { expect } from 'chai';
import type { ModelDescription, Rollout } from '@infer/contract';
import { mlpFeatures } from './helpers/batches.js';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A rollout whose candidate is unloaded while it runs. The candidate drains
 * and no job can reach it any more (pinned ones are 404, its routed share
 * goes to the others), so no step could ever be judged ("held until one
 * has"): it would stay `running` for ever, and the model's routing locked
 * with it (every `PUT …/routing` 409). It ends rolled back instead, saying
 * why, and the routing can be set again.
 */
const ADMIN = 'review-admin-key';

describe('rollouts: unloading their versions', function () {
  this.timeout(60_000);
  let repo: TempModelRepo | undefined;
  let p: TestPlatform | undefined;

  afterEach(async () => {
    await p?.close();
    p = undefined;
    repo?.remove();
    repo = undefined;
  });

  const admin = (pathname: string, init: RequestInit = {}) =>
    fetch(p!.baseUrl + pathname, { ...init, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' } });

  it('ends rolled back once its candidate is unloaded, so the routing can be set again', async () => {
    repo = servedMlpRepo(['1', '2']);
    p = await startPlatform({ models: repo.root, env: { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0.2' } });
    const platform = p;
    expect((await admin('/v1/models/mlp/routing', { method: 'PUT', body: JSON.stringify({ weights: { '1': 100 } }) })).status).to.equal(200);
    const res = await admin('/v1/models/mlp/rollouts', { method: 'POST', body: JSON.stringify({ version: '2', steps: [10, 100], step_seconds: 1 }) });
    expect(res.status, await res.clone().text()).to.equal(201);
    const rollout = (await res.json()) as Rollout;

    // The operator changes their mind about version 2 and unloads it.
    expect((await admin('/v1/models/mlp/versions/2/unload', { method: 'POST' })).status).to.equal(202);
    await waitUntil(
      async () => {
        const m = (await (await platform.api('/v1/models/mlp')).json()) as ModelDescription;
        return m.versions_detail.every((d) => d.version !== '2');
      },
      20_000,
      'version 2 gone from versions_detail',
    );
    // Traffic keeps flowing (all of it to version 1): the rollout is past its step time many times over.
    for (let i = 0; i < 20; i++) {
      const job = await platform.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=10' }, body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(i) } }) });
      expect(job.status).to.equal(200);
    }
    let last: Rollout | undefined;
    try {
      await waitUntil(
        async () => {
          last = (await (await admin(`/v1/models/mlp/rollouts/${rollout.id}`)).json()) as Rollout;
          return last.state !== 'running';
        },
        10_000,
        'the rollout of the unloaded version to end',
      );
    } catch {
      expect(last?.state, `rollout ${rollout.id} of a version that is gone, ${Math.round((Date.now() - Date.parse(rollout.started_at)) / 1000)} s after a 1 s step`).to.not.equal('running');
    }
    expect(last!.state).to.equal('rolled_back');
    expect(last!.reason).to.match(/version 2 is draining \(unloaded\)/);
    const put = await admin('/v1/models/mlp/routing', { method: 'PUT', body: JSON.stringify({ weights: { '1': 100 } }) });
    expect(put.status, await put.clone().text()).to.equal(200);
  });
  it('unloading a version its rollout goes back to is 409 conflict while the rollout runs, and 202 once it is canceled', async () => {
    repo = servedMlpRepo(['1', '2']);
    p = await startPlatform({ models: repo.root, env: { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0.2' } });
    expect((await admin('/v1/models/mlp/routing', { method: 'PUT', body: JSON.stringify({ weights: { '1': 100 } }) })).status).to.equal(200);
    const res = await admin('/v1/models/mlp/rollouts', { method: 'POST', body: JSON.stringify({ version: '2', steps: [10, 100], step_seconds: 3600 }) });
    expect(res.status, await res.clone().text()).to.equal(201);
    const rollout = (await res.json()) as Rollout;
    // A rollback would send the traffic back to version 1: with it gone, the default routing would give it all to version 2.
    const refused = await admin('/v1/models/mlp/versions/1/unload', { method: 'POST' });
    expect(refused.status).to.equal(409);
    const problem = (await refused.json()) as { code: string; detail: string };
    expect(problem.code).to.equal('conflict');
    expect(problem.detail).to.contain(rollout.id);
    const m = (await (await p.api('/v1/models/mlp')).json()) as ModelDescription;
    expect(m.versions_detail.find((d) => d.version === '1')?.state, 'nothing was drained').to.equal('ready');

    expect((await admin(`/v1/models/mlp/rollouts/${rollout.id}/cancel`, { method: 'POST' })).status).to.equal(200);
    expect((await admin('/v1/models/mlp/versions/1/unload', { method: 'POST' })).status).to.equal(202);
  });
});
