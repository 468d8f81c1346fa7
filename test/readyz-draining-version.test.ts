import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { interactiveQueue, type ModelDescription } from '@infer/contract';
import { mlpFeatures } from './helpers/batches.js';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/api.md "GET /readyz": per version `{ready, workers_ready}`; the schema's description: "a version
 * no live worker serves answers 503 `unavailable` at submit", i.e. `ready` says whether a job for it is
 * taken. A version an admin unloaded takes no new job ("draining": a pinned job is 404
 * version_not_found) while its worker finishes the queued ones. /readyz must not call it ready then.
 */
describe('/readyz for a version its workers are draining', function () {
  this.timeout(60_000);
  const ADMIN = 'readyz-draining-admin';
  let repo: TempModelRepo;
  let p: TestPlatform;
  let redis: Redis;
  let queue: Queue | undefined;

  before(async () => {
    repo = servedMlpRepo(['1', '2']);
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    p = await startPlatform({ models: repo.root, env: { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0' } });
  });
  after(async () => {
    await queue?.resume().catch(() => undefined);
    await queue?.close();
    await p?.close();
    redis?.disconnect();
    repo?.remove();
  });

  it('does not say ready: true for a version whose jobs are refused', async () => {
    // Version 1's queue paused (FETCH honours it): its jobs stay queued, so it stays draining after the unload.
    const ref = interactiveQueue(p.prefix, 'mlp', '1');
    queue = new Queue(ref.name, { connection: redis, prefix: ref.prefix });
    await queue.pause();
    const first = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: '1', input: { features: mlpFeatures(1) } }) });
    expect(first.status).to.equal(202);
    await first.body?.cancel();
    const unload = await fetch(`${p.baseUrl}/v1/models/mlp/versions/1/unload`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    expect(unload.status, await unload.clone().text()).to.equal(202);
    await p.worker!.lookAtModels();
    await waitUntil(
      async () => {
        await p.gateway.catalog.refresh();
        const d = ((await (await p.api('/v1/models/mlp')).json()) as ModelDescription).versions_detail.find((x) => x.version === '1');
        return d?.state === 'draining' && d.workers_ready === 1;
      },
      20_000,
      'version 1 draining on the worker',
    );
    const readyz = (await (await fetch(`${p.baseUrl}/readyz`)).json()) as { models: Record<string, Record<string, { ready: boolean; workers_ready: number }>> };
    const submit = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: '1', input: { features: mlpFeatures(2) } }) });
    const status = submit.status;
    await submit.body?.cancel();
    expect({ ready: readyz.models.mlp!['1']!.ready, submitAccepted: status === 202 }, `/readyz said ${JSON.stringify(readyz.models.mlp!['1'])}, a submit pinned to v1 got ${status}`).to.deep.equal({
      ready: status === 202,
      submitAccepted: status === 202,
    });
  });
});
