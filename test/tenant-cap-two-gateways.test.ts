import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { startPlatform, TEST_KEY, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';

/**
 * docs/api.md, POST /v1/jobs: the limits "are over every queue any gateway
 * has written to, and they hold exactly across any number of gateways".
 * Two gateways that share both queues (mlp versions 1 and 2), one tenant's
 * burst spread over both: TENANT_MAX_QUEUED holds exactly. (Once, each
 * gateway counted the other queue as it had last read it, and the tenant
 * went over by about a third of its cap.)
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

  it('holds the tenant to its cap exactly', async () => {
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
    // Each queue holds an allowance of the tenant's cap, the allowances adding up to the cap: a burst into both holds it.
    expect(accepted, `accepted ${accepted} for a cap of ${CAP}`).to.equal(CAP);
  });
});
