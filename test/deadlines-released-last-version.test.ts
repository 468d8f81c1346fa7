import { expect } from 'chai';
import { Redis } from 'ioredis';
import { loadConfig } from '@infer/config';
import { silentLogger } from '@infer/logger';
import { JobStore } from '@infer/job-store';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { mlpFeatures } from './helpers/batches.js';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { deletePrefix, TEST_KEY, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * The gateway's deadline sweep covers draining versions the gateway let go
 * of while their queue holds work (ModelCatalog.drainingWithQueuedWork),
 * the last version of a model too: once a model's last loaded version is
 * released, the repository forgets the model, and its released version's
 * queued jobs must still end at their Cancel-After deadline.
 */
const ADMIN = 'sweep-last-version-admin';

describe('deadlines: deadline sweep and a model whose only version was released', function () {
  this.timeout(60_000);
  let repo: TempModelRepo | undefined;
  let gateway: Gateway | undefined;
  let redis: Redis | undefined;
  let prefix: string | undefined;

  afterEach(async () => {
    redis?.disconnect();
    redis = undefined;
    await gateway?.close();
    gateway = undefined;
    if (prefix) await deletePrefix(TEST_REDIS_URL, prefix);
    prefix = undefined;
    repo?.remove();
    repo = undefined;
  });

  it('ends a queued job of the unloaded only version at its Cancel-After deadline, unread', async () => {
    repo = servedMlpRepo(['1']);
    prefix = uniquePrefix('sweep-last-version');
    const config = loadConfig({
      REDIS_URL: TEST_REDIS_URL,
      MODEL_REPOSITORY: repo.root,
      QUEUE_PREFIX: prefix,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      ADMIN_API_KEYS: `ops:${ADMIN}`,
      MODEL_POLL_SECONDS: '0.2',
      PORT: '0',
      HOST: '127.0.0.1',
      WORKER_METRICS_PORT: '0',
    });
    gateway = await createGateway(config, silentLogger);
    const base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;

    const res = await fetch(`${base}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', 'cancel-after': '4s' },
      body: JSON.stringify({ model: 'mlp', version: '1', input: { features: mlpFeatures(1) } }),
    });
    expect(res.status, await res.clone().text()).to.equal(202);
    const { id } = (await res.json()) as { id: string };
    const submitted = Date.now();

    // The operator unloads the model's only version (no worker is up). The answer itself is not under
    // test here (it may be 404 once the gateway let go of the model); the drain mark is.
    await fetch(`${base}/v1/models/mlp/versions/1/unload`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    await waitUntil(() => !gateway!.catalog.all().some((v) => v.name === 'mlp' && v.version === '1'), 3_000, 'the gateway to release mlp v1');
    expect(Date.now() - submitted, 'released before the deadline').to.be.below(4_000);

    redis = new Redis(TEST_REDIS_URL);
    const store = new JobStore(redis, { prefix, resultTtlMs: 60_000 });
    const ended = await waitUntil(async () => ((await store.read(id)).kind === 'ended' ? true : null), 4_000 + 6_000 - (Date.now() - submitted), 'the job to end').catch(
      () => false,
    );
    const kind = (await store.read(id)).kind;
    expect(
      ended,
      `job ${id} is still ${kind} ${Math.round((Date.now() - submitted) / 1000)} s after a 4 s Cancel-After; drainingWithQueuedWork=${JSON.stringify(gateway.catalog.drainingWithQueuedWork())}`,
    ).to.equal(true);
  });
});
