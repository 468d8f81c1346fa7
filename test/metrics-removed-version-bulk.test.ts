import { rmSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { mlpFeatures, submitBatch, toNdjson } from './helpers/batches.js';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { parse, value } from './helpers/prometheus.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * A version removed from the repository keeps being drained by the
 * workers, bulk chunks included (docs/operations.md "Draining": "The workers
 * keep the version loaded until its interactive and bulk queues are empty").
 * The queue gauges are documented fleet-wide ("every gateway reports the same
 * fleet-wide figure"): a gateway that does not serve the version must still
 * report its waiting bulk chunks and their age, as it does for its interactive
 * queue (test/metrics-removed-version-depth.test.ts), or an alert on
 * infer_queue_oldest_age_seconds{queue="bulk"} never fires for a stuck drain.
 */
describe('metrics: the bulk queue gauges of a removed version that still has chunks waiting', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let second: Gateway | undefined;

  before(async () => {
    repo = servedMlpRepo(['1', '2']);
    p = await startPlatform({ models: repo.root, worker: false, env: { MODEL_POLL_SECONDS: '0' } });
  });
  after(async () => {
    await second?.close();
    await p?.close();
    repo?.remove();
  });

  it('are reported by every gateway, one that does not serve the version too', async () => {
    const V1 = { model: 'mlp', version: '1' };
    const items = Array.from({ length: 3 }, (_, i) => ({ custom_id: `r${i}`, input: { features: mlpFeatures(i) } }));
    await submitBatch(p, { ndjson: toNdjson(items), query: 'model=mlp&version=1' });

    const first = parse(await (await fetch(`${p.baseUrl}/metrics`)).text());
    expect(value(first, 'infer_bulk_queue_chunks', { ...V1, state: 'waiting' }), 'the first gateway (serving v1)').to.be.at.least(1);

    // Version 1's folder goes (its chunk still to drain); a second gateway starts on the same Redis and folder.
    rmSync(path.join(repo.root, 'mlp', '1'), { recursive: true, force: true });
    second = await createGateway(p.config, silentLogger);
    const secondUrl = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;
    const other = parse(await (await fetch(`${secondUrl}/metrics`)).text());
    expect(value(other, 'infer_bulk_queue_chunks', { ...V1, state: 'waiting' }), 'the second gateway: bulk chunks waiting for mlp v1').to.equal(
      value(first, 'infer_bulk_queue_chunks', { ...V1, state: 'waiting' }),
    );
    expect(value(other, 'infer_queue_oldest_age_seconds', { ...V1, queue: 'bulk' }), 'the second gateway: age of the oldest waiting chunk').to.be.greaterThan(0);
  });
});
