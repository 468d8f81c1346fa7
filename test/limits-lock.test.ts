import { expect } from 'chai';
import { Redis } from 'ioredis';
import { LimitsLock } from '../apps/gateway/src/jobs/limits-lock.js';
import { OwnRedis } from './helpers/redis-server.js';
import { waitUntil } from './helpers/wait.js';

/**
 * The limits lock (docs/api.md, POST /v1/jobs): "one that cannot have it
 * within 5 s answers 503 unavailable". The wait counts from the request,
 * however many envelopes of the same gateway wait ahead of it; and a lock
 * request that gave up leaves no lock behind, though Redis runs it late.
 */
describe('the limits lock', function () {
  this.timeout(30_000);
  let redis: OwnRedis;
  const clients: Redis[] = [];
  before(async () => {
    redis = await OwnRedis.start();
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.disconnect();
  });
  after(async () => {
    await redis?.stop();
  });
  const client = (options: { commandTimeout?: number } = {}) => {
    const c = new Redis(redis.url, options);
    clients.push(c);
    return c;
  };

  it('gives up waitMs after being asked, not after the holders ahead of it in this process gave up', async () => {
    const admin = client();
    await admin.set('lock-a', 'a-dead-gateway', 'PX', 10_000);
    const lock = new LimitsLock({ redis: client(), key: 'lock-a', waitMs: 1000 });
    const started = performance.now();
    const ended = await Promise.all(
      [1, 2, 3].map((n) =>
        lock.hold(async () => n).then(
          () => ({ ok: true, ms: performance.now() - started }),
          (err: { code?: string; status?: number }) => ({ ok: false, code: err.code, status: err.status, ms: performance.now() - started }),
        ),
      ),
    );
    for (const e of ended) {
      expect(e, JSON.stringify(ended)).to.include({ ok: false, code: 'unavailable', status: 503 });
      // Before: the second gave up after 2 s, the third after 3 s.
      expect(e.ms, JSON.stringify(ended)).to.be.below(1800);
    }
  });

  it('a lock request that timed out (Redis stalled) and ran once Redis went on leaves no lock behind', async () => {
    const admin = client();
    const lock = new LimitsLock({ redis: client({ commandTimeout: 300 }), key: 'lock-b', holdMs: 5000 });
    await admin.client('PAUSE', 1000, 'WRITE');
    const err = (await lock.hold(async () => 'held').catch((e: unknown) => e)) as Error;
    expect(err.message).to.match(/timed out/i);
    // Redis runs the SET when the pause ends, then the release sent after it.
    await waitUntil(async () => (await admin.set('probe', '1')) === 'OK', 5000, 'the pause to end');
    await waitUntil(async () => (await admin.exists('lock-b')) === 0, 2000, 'no lock left behind').catch(() => undefined);
    expect(await admin.get('lock-b'), 'a lock nobody holds, for its 5 s').to.equal(null);
    expect(await lock.hold(async () => 'held')).to.equal('held');
  });
});
