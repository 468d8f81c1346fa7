import { expect } from 'chai';
import { loadConfig } from '@infer/config';
import { createLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { SHIPPED_MODELS, TEST_KEY, uniquePrefix } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { LogCapture } from './helpers/log-capture.js';


/**
 * While Redis is away, what a gateway logs must not grow with its clients' traffic (docs/architecture.md:
 * throttledWarn, "the one-line-in-10-s warning of work retried often (Redis away)"). Clients are told 503 with
 * Retry-After: 2 and retry: a warn line per request is a log volume an outage's traffic sets.
 */
describe('Redis away, the log is bounded however many requests come', function () {
  this.timeout(60_000);
  let redis: OwnRedis;
  let gateway: Gateway;
  let base: string;
  const log = new LogCapture();

  before(async () => {
    redis = await OwnRedis.start();
    const config = loadConfig({ REDIS_URL: redis.url, MODEL_REPOSITORY: SHIPPED_MODELS, QUEUE_PREFIX: uniquePrefix('rvaway'), API_KEYS: `a:${TEST_KEY}` });
    gateway = await createGateway(config, createLogger({ level: 'info', name: 'gateway', destination: log }));
    base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;
  });
  after(async () => {
    await gateway?.close();
    await redis?.stop();
  });

  it('200 submits refused 503 while Redis is away log a bounded number of warn lines', async () => {
    await redis.stop();
    const statuses: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < 200; i++) {
      const res = await fetch(`${base}/v1/jobs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } }),
      });
      statuses.push(res.status);
      await res.text();
    }
    const ms = performance.now() - t0;
    expect(statuses.filter((s) => s !== 503), String(statuses)).to.deep.equal([]);
    const warns = log.parsed().filter((l) => (l.level as number) >= 40);
    const byMsg: Record<string, number> = {};
    for (const l of warns) byMsg[String(l.msg)] = (byMsg[String(l.msg)] ?? 0) + 1;
    // Generous: a handful of distinct throttled warnings, a few connection errors; not one per request.
    expect(warns.length, `${Math.round(ms)} ms of outage: ${JSON.stringify(byMsg)}`).to.be.below(50);
  });
});
