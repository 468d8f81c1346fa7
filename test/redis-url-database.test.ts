import { expect } from 'chai';
import { Redis } from 'ioredis';
import { SHIPPED_MODELS, TEST_KEY } from './helpers/platform.js';
import { freePort, OwnRedis } from './helpers/redis-server.js';
import { Spawned, type Exit } from './helpers/spawned.js';

/**
 * REDIS_URL's database (`redis://:pass@host/2`). ioredis sends SELECT after each connect and, when Redis refuses
 * it, only emits an 'error' and carries on with the connection on database 0. A REDIS_URL naming a database the
 * server does not have (the default Redis has 16) must stop the gateway and the worker before they write anything
 * (database 0 may be another deployment's), and a database that is not a number is a configuration error naming
 * REDIS_URL (exit 2), not ioredis's stack trace.
 */
describe('REDIS_URL naming a database the server refuses', function () {
  this.timeout(40_000);
  let redis: OwnRedis;
  let db0: Redis;
  const spawned: Spawned[] = [];

  before(async () => {
    redis = await OwnRedis.start();
    db0 = new Redis(redis.url);
  });
  afterEach(async () => {
    for (const s of spawned.splice(0)) s.kill();
    await db0.flushall();
  });
  after(async () => {
    db0?.disconnect();
    await redis?.stop();
  });

  const env = async (url: string) => ({
    REDIS_URL: url,
    MODEL_REPOSITORY: SHIPPED_MODELS,
    API_KEYS: `tenant-a:${TEST_KEY}`,
    PORT: String(await freePort()),
    HOST: '127.0.0.1',
    WORKER_METRICS_PORT: '0',
  });

  /** Whether it got as far as `startedLine`, or else how it exited. */
  async function startOrExit(s: Spawned, startedLine: string): Promise<{ started: boolean; exit?: Exit }> {
    // waitForLog fails as soon as the output ends without the line: the process exited first.
    const started = await s.waitForLog(startedLine, 25_000).then(
      () => true,
      () => false,
    );
    if (started) return { started };
    return { started, exit: await s.exit(5_000) };
  }

  for (const [script, startedLine] of [
    ['start:gateway', 'gateway listening'],
    ['start:worker', 'worker started'],
  ] as const) {
    it(`${script}: REDIS_URL=…/99 (no such database) stops the process instead of serving on database 0`, async () => {
      const e = await env(`${redis.url}/99`);
      const s = new Spawned(script, e);
      spawned.push(s);
      const { started, exit } = await startOrExit(s, startedLine);
      if (started && script === 'start:gateway') {
        // What a client then gets: a job accepted, and written to database 0.
        const res = await fetch(`http://127.0.0.1:${e.PORT}/v1/jobs`, {
          method: 'POST',
          headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } }),
        });
        await res.arrayBuffer();
      }
      const keysInDb0 = await db0.dbsize();
      expect(started, `${script} started on database 0 (${keysInDb0} keys written there) although REDIS_URL named database 99${s.tail()}`).to.equal(false);
      expect(exit!.code, 'a failed start exits non-zero').to.not.equal(0);
      expect(keysInDb0, 'keys written to database 0').to.equal(0);
    });
  }

  it('start:gateway: REDIS_URL=…/abc is a configuration error naming REDIS_URL (exit 2), not an uncaught ioredis ReplyError', async () => {
    const s = new Spawned('start:gateway', await env(`${redis.url}/abc`));
    spawned.push(s);
    const exit = await s.exit(25_000);
    const stderr = (s as unknown as { stderr: string }).stderr;
    expect({ code: exit.code, namesRedisUrl: stderr.includes('REDIS_URL') }, stderr).to.deep.equal({ code: 2, namesRedisUrl: true });
  });
});
