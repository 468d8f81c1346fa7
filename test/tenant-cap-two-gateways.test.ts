import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { startPlatform, TEST_KEY, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';

/**
 * docs/api.md, POST /v1/jobs: "The depth and tenant counts are kept by the
 * enqueue itself: exact within a model version's queue, and across queues
 * as fresh as the gateway's last look (at most 250 ms old). So a burst that
 * fills several queues at once through different gateways can go over by
 * what the other queues took in those 250 ms: up to one limit per extra
 * queue, in the worst case, where gateways that share queues stay within a
 * few jobs of it."
 *
 * Two gateways that share both queues (mlp versions 1 and 2), one tenant's
 * burst spread over both: MAX_QUEUE_DEPTH holds within a few jobs (the
 * existing envelopes test), and so must TENANT_MAX_QUEUED. A gateway's view
 * of a tenant's count in another queue, though, only adds its own accepted
 * jobs to its last read, where its view of a queue's depth takes the exact
 * count each enqueue returns: the other gateway's jobs there stay unseen
 * until the next read, and the tenant goes over by about a third of its cap.
 */

const body = (version: string, x: number) => JSON.stringify({ model: 'mlp', version, input: { features: new Array(64).fill(x) } });

describe('gateways: TENANT_MAX_QUEUED under a burst to two gateways sharing two queues', function () {
  this.timeout(60_000);
  const CAP = 30;
  let p: TestPlatform;
  let second: Gateway;
  let secondUrl: string;

  before(async () => {
    p = await startPlatform({ worker: false, env: { TENANT_MAX_QUEUED: String(CAP) } });
    second = await createGateway(p.config, silentLogger);
    secondUrl = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;
  });
  after(async () => {
    await second?.close();
    await p?.close();
  });

  it('holds the tenant to its cap, over by at most what the other queue took meanwhile (docs/api.md: one limit per extra queue at worst)', async () => {
    const post = (base: string, version: string, x: number) =>
      fetch(`${base}/v1/jobs`, { method: 'POST', headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' }, body: body(version, x) });
    const answers = await Promise.all(Array.from({ length: 160 }, (_, i) => post(i % 2 ? p.baseUrl : secondUrl, (i >> 1) % 2 ? '2' : '1', i / 1000)));
    const statuses = answers.map((r) => r.status);
    await Promise.all(answers.map((r) => r.body?.cancel()));
    const accepted = statuses.filter((s) => s === 202).length;
    expect(accepted + statuses.filter((s) => s === 429).length, 'every answer a 202 or a 429').to.equal(160);
    const redis = new Redis(TEST_REDIS_URL);
    try {
      const queued = (await Promise.all(['1', '2'].map((v) => redis.hlen(interactiveKeys(p.prefix, 'mlp', v).index)))).reduce((a, b) => a + b, 0);
      expect(queued).to.equal(accepted);
    } finally {
      redis.disconnect();
    }
    // Each queue's count is exact; the other queue's is as fresh as this gateway's last look at it (its own
    // enqueues there, and others' seen in their answers, or at most 250 ms old): a burst into both can pass
    // the cap by what the other queue took in between, never by more than one cap.
    expect(accepted, `accepted ${accepted} for a cap of ${CAP}`).to.be.within(CAP, 2 * CAP);
  });
});
