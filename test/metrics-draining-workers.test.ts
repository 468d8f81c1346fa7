import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { interactiveQueue, type ModelDescription } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { mlpFeatures } from './helpers/batches.js';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { parse, value } from './helpers/prometheus.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * Workers draining a version (unloaded or removed there, still taking its queued jobs) count as holding
 * it, as in /readyz's `workers_ready`: `infer_fleet_workers{state="draining"}` reports them, and
 * `infer_queue_backlog_per_worker` divides the depth among them, so the "queued, and no worker serves
 * it" alert of docs/operations.md does not fire while they serve it.
 */
describe('metrics: the queue gauges of a version its workers are draining', function () {
  this.timeout(60_000);
  const ADMIN = 'review-metrics-admin';
  let repo: TempModelRepo;
  let p: TestPlatform;
  let other: InferenceWorker | undefined;
  let redis: Redis;
  let queue: Queue | undefined;

  before(async () => {
    repo = servedMlpRepo(['1', '2']);
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    p = await startPlatform({ models: repo.root, env: { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0' } });
    other = await createWorker(p.config, silentLogger);
    await p.gateway.catalog.refresh();
  });
  after(async () => {
    await queue?.close();
    await other?.close();
    await p?.close();
    redis?.disconnect();
    repo?.remove();
  });

  it('count the workers draining it: backlog per worker is depth / workers, and they are in infer_fleet_workers', async () => {
    const V1 = { model: 'mlp', version: '1' };
    // Version 1's queue paused (an operator's Queue.pause(), which FETCH honours): its jobs stay queued while it drains.
    const ref = interactiveQueue(p.prefix, 'mlp', '1');
    queue = new Queue(ref.name, { connection: redis, prefix: ref.prefix });
    await queue.pause();
    for (let i = 0; i < 4; i++) {
      const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: '1', input: { features: mlpFeatures(i) } }) });
      expect(res.status).to.equal(202);
      await res.body?.cancel();
    }
    const unload = await fetch(`${p.baseUrl}/v1/models/mlp/versions/1/unload`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    expect(unload.status, await unload.clone().text()).to.equal(202);
    // Both workers report version 1 draining (its jobs still queued), in their heartbeats.
    await Promise.all([p.worker!.lookAtModels(), other!.lookAtModels()]);
    await waitUntil(
      async () => {
        const ids = await redis.zrange(`${p.prefix}:{fleet}:workers`, '0', '-1');
        const beats = ids.length ? await redis.mget(...ids.map((id) => `${p.prefix}:{fleet}:worker:${id}`)) : [];
        const draining = beats.filter((b) => b && (JSON.parse(b) as { versions: Array<{ version: string; state: string }> }).versions.some((v) => v.version === '1' && v.state === 'draining'));
        return draining.length === 2;
      },
      20_000,
      'both heartbeats to report version 1 draining',
    );
    await waitUntil(
      async () => {
        await p.gateway.catalog.refresh();
        const d = ((await (await p.api('/v1/models/mlp')).json()) as ModelDescription).versions_detail.find((x) => x.version === '1');
        return d?.state === 'draining' && d.workers_ready === 2;
      },
      20_000,
      'version 1 draining on both workers',
    );
    const readyz = (await (await fetch(`${p.baseUrl}/readyz`)).json()) as { models: Record<string, Record<string, { workers_ready: number }>> };
    expect(readyz.models.mlp!['1']!.workers_ready, '/readyz: workers holding version 1').to.equal(2);

    const g = parse(await (await fetch(`${p.baseUrl}/metrics`)).text());
    expect(value(g, 'infer_queue_depth', V1), 'depth').to.equal(4);
    // infer_fleet_workers summed over its states: the two live workers holding it; the backlog: 4 queued / 2 workers serving.
    expect({ fleetWorkers: value(g, 'infer_fleet_workers', V1), backlogPerWorker: value(g, 'infer_queue_backlog_per_worker', V1) }).to.deep.equal({ fleetWorkers: 2, backlogPerWorker: 2 });
  });
});
