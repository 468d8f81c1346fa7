import { rmSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { mlpFeatures } from './helpers/batches.js';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { parse, value } from './helpers/prometheus.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

const ADMIN = 'dashboard-removed-admin';

/**
 * README "Queue dashboard": the list shows each model version's queues and "one removed goes once it has
 * drained and been let go". A version removed from the repository with envelopes still queued has not
 * drained: its queue must stay on every gateway's dashboard (as it stays in every gateway's /metrics),
 * a gateway started after the removal included.
 */
describe('the dashboard of a gateway started after a version was removed with jobs queued', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let second: Gateway | undefined;

  before(async () => {
    repo = servedMlpRepo(['1', '2']);
    p = await startPlatform({ models: repo.root, worker: false, env: { MODEL_POLL_SECONDS: '0', ADMIN_API_KEYS: `ops:${ADMIN}` } });
  });
  after(async () => {
    await second?.close();
    await p?.close();
    repo?.remove();
  });

  it('still lists the removed version\'s interactive queue, which /metrics reports with 3 queued', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: '1', input: { features: mlpFeatures(i) } }) });
      expect(res.status).to.equal(202);
      await res.body?.cancel();
    }
    rmSync(path.join(repo.root, 'mlp', '1'), { recursive: true, force: true });
    second = await createGateway(p.config, silentLogger);
    const url = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;

    const metrics = parse(await (await fetch(`${url}/metrics`)).text());
    expect(value(metrics, 'infer_queue_depth', { model: 'mlp', version: '1' }), 'the second gateway\'s /metrics').to.equal(3);

    const res = await fetch(`${url}/admin/queues/api/queues?activeQueue=infer.mlp.v1&status=waiting`, { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(res.status).to.equal(200);
    const body = (await res.json()) as { queues: Array<{ name: string; counts?: Record<string, number> }> };
    expect(body.queues.map((q) => q.name), 'queues on the second gateway\'s dashboard').to.include('infer.mlp.v1');
  });
});
