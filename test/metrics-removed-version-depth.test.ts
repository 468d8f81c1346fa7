import { rmSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { mlpFeatures } from './helpers/batches.js';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { parse, value } from './helpers/prometheus.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';

/**
 * A version whose folder was removed while jobs are still queued for it keeps its queue until workers
 * drain it. Every gateway reports its depth and age alike, a gateway started after the removal too: the
 * queue is read from Redis's registry of interactive queues, not only from the gateway's repository.
 */
describe('metrics: the queue gauges of a removed version that still has queued jobs', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let second: Gateway | undefined;
  let redis: Redis;

  before(async () => {
    repo = servedMlpRepo(['1', '2']);
    redis = new Redis(TEST_REDIS_URL);
    p = await startPlatform({ models: repo.root, worker: false, env: { MODEL_POLL_SECONDS: '0' } });
  });
  after(async () => {
    await second?.close();
    await p?.close();
    redis?.disconnect();
    repo?.remove();
  });

  it('are reported by a gateway started after the removal, as by the gateway that was there before', async () => {
    const V1 = { model: 'mlp', version: '1' };
    for (let i = 0; i < 3; i++) {
      const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: '1', input: { features: mlpFeatures(i) } }) });
      expect(res.status).to.equal(202);
      await res.body?.cancel();
    }
    expect(Number(await redis.get(interactiveKeys(p.prefix, 'mlp', '1').queued)), 'queued in Redis').to.equal(3);

    // Version 1's folder goes (its queued jobs still to drain); a second gateway starts on the same Redis and folder.
    rmSync(path.join(repo.root, 'mlp', '1'), { recursive: true, force: true });
    second = await createGateway(p.config, silentLogger);
    const secondUrl = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;

    const first = parse(await (await fetch(`${p.baseUrl}/metrics`)).text());
    const other = parse(await (await fetch(`${secondUrl}/metrics`)).text());
    expect(value(first, 'infer_queue_depth', V1), 'the first gateway').to.equal(3);
    const series = other.filter((s) => s.name === 'infer_queue_depth' && s.labels.model === 'mlp' && s.labels.version === '1');
    expect(series.length, 'the second gateway has an infer_queue_depth series for mlp v1').to.equal(1);
    expect(value(other, 'infer_queue_depth', V1), 'the second gateway: the same fleet-wide figure').to.equal(3);
    expect(value(other, 'infer_queue_oldest_age_seconds', { ...V1, queue: 'interactive' }), 'the second gateway: the age of the oldest queued job').to.be.greaterThan(0);
  });
});
