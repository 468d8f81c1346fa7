import path from 'node:path';
import { expect } from 'chai';
import { loadConfig } from '@infer/config';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { EMBED_ROWS } from '../scripts/build-models.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { FIXTURE_MODELS, TEST_REDIS_URL, deletePrefix, uniquePrefix } from './helpers/platform.js';

/**
 * The switch the `observability` bench section measures with:
 * createGateway's and createWorker's `metrics: false`. Jobs run as ever;
 * nothing is counted; neither process serves /metrics (a 404, not an empty
 * scrape that would look healthy); the worker still answers /healthz.
 */
describe('metrics off (createGateway / createWorker { metrics: false })', function () {
  this.timeout(30_000);
  const KEY = 'metrics-off-key';
  let repo: TempModelRepo;
  let prefix: string;
  let gateway: Gateway;
  let worker: InferenceWorker;
  let base: string;

  before(async () => {
    repo = tempModelRepo({ 'embed-sum': { from: path.join(FIXTURE_MODELS, 'embed-sum') } });
    prefix = uniquePrefix('metrics-off');
    const config = loadConfig({
      REDIS_URL: TEST_REDIS_URL,
      MODEL_REPOSITORY: repo.root,
      QUEUE_PREFIX: prefix,
      API_KEYS: `tenant-a:${KEY}`,
      HOST: '127.0.0.1',
      WORKER_METRICS_PORT: '0',
    });
    gateway = await createGateway(config, silentLogger, { metrics: false });
    worker = await createWorker(config, silentLogger, { models: gateway.models, metrics: false });
    await gateway.catalog.refresh();
    base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;
  });

  after(async () => {
    await worker?.close();
    await gateway?.close();
    if (prefix) await deletePrefix(TEST_REDIS_URL, prefix);
    repo?.remove();
  });

  it('runs jobs, counts nothing and serves no /metrics; the worker keeps /healthz', async () => {
    const res = await fetch(`${base}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', prefer: 'wait=10' },
      body: JSON.stringify({ model: 'embed-sum', input: { ids: [0, 1, 2, EMBED_ROWS - 1] } }),
    });
    expect(res.status).to.equal(200);
    expect(((await res.json()) as { status: string }).status).to.equal('succeeded');

    expect((await fetch(`${base}/metrics`)).status).to.equal(404);
    const workerBase = `http://127.0.0.1:${worker.metricsPort}`;
    expect((await fetch(`${workerBase}/metrics`)).status).to.equal(404);
    expect((await fetch(`${workerBase}/healthz`)).status).to.equal(200);

    expect(worker.metrics.enabled).to.equal(false);
    expect(await worker.metrics.registry.getSingleMetricAsString('infer_jobs_ended_total')).to.not.match(/^infer_jobs_ended_total\{/m);
  });
});
