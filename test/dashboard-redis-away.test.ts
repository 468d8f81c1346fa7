import { expect } from 'chai';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { waitUntil } from './helpers/wait.js';

const ADMIN = 'dashboard-away-admin-key';

/**
 * The queue dashboard (README "Queue dashboard") is an operator's tool, and an operator opens it most when
 * something is wrong: Redis away is such a time. Its page and API must answer promptly (an error, or the
 * queues last shown as the dashboard's code says), not hang, and work again once Redis is back.
 */
describe('the queue dashboard while Redis is away', function () {
  this.timeout(90_000);
  let redis: OwnRedis;
  let p: TestPlatform;
  const auth = { authorization: `Bearer ${ADMIN}` };

  before(async () => {
    redis = await OwnRedis.start();
    p = await startPlatform({ redisUrl: redis.url, env: { ADMIN_API_KEYS: `ops:${ADMIN}` } });
  });
  after(async () => {
    await p?.worker?.close().catch(() => undefined);
    await p?.gateway.close().catch(() => undefined);
    await redis?.start().catch(() => undefined);
    await p?.close().catch(() => undefined);
    await redis?.stop();
  });

  async function get(pathname: string): Promise<{ status: number | string; ms: number }> {
    const t = performance.now();
    const status = await fetch(p.baseUrl + pathname, { headers: auth, signal: AbortSignal.timeout(8000) }).then(
      async (r) => {
        await r.text();
        return r.status;
      },
      (err: Error) => `no answer (${err.name})`,
    );
    return { status, ms: Math.round(performance.now() - t) };
  }

  it('answers its page and its API promptly while Redis is down, and lists the queues again once it is back', async () => {
    const before = await get('/admin/queues/api/queues');
    expect(before.status).to.equal(200);

    await redis.stop();
    const page = await get('/admin/queues');
    const api = await get('/admin/queues/api/queues');
    expect({ page: page.status, pageSlow: page.ms > 6000, apiAnswered: typeof api.status === 'number', apiSlow: api.ms > 6000 }, JSON.stringify({ page, api })).to.deep.equal({
      page: 200,
      pageSlow: false,
      apiAnswered: true,
      apiSlow: false,
    });

    await redis.start();
    await waitUntil(async () => (await get('/admin/queues/api/queues')).status === 200, 20_000, 'the dashboard API to answer 200 again');
  });
});
