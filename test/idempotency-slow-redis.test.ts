import { expect } from 'chai';
import { Redis } from 'ioredis';
import { loadConfig } from '@infer/config';
import { interactiveKeys, type Job } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { ModelRepository } from '@infer/models';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { deletePrefix, SHIPPED_MODELS, TEST_KEY, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { RedisProxy } from './helpers/tcp-proxy.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/api.md, `Idempotency-Key`: "The same key from the same tenant within
 * 24 hours of its first use returns that first job instead of creating one";
 * "Retrying. 429 and 503 carry Retry-After": a client that gets a 503 sends
 * the same request, with the same key, again (to whichever gateway the load
 * balancer picks).
 *
 * Gateway A's Redis stalls for longer than its 5 s command timeout while
 * running a submit's enqueue: the enqueue did happen (the job is queued and
 * will run), but A gives up on it, answers 503 and lets go of the key. The
 * client's retry, on gateway B, then makes a second job for the same key.
 * A gateway that does not know whether its write happened must not free the
 * key of a job that may exist.
 */

describe('gateways: Idempotency-Key when a gateway’s Redis stalls past its command timeout', function () {
  this.timeout(60_000);
  let proxy: RedisProxy;
  let prefix: string;
  let models: ModelRepository;
  let a: Gateway | undefined;
  let b: Gateway | undefined;
  let aUrl: string;
  let bUrl: string;
  let redis: Redis;

  const body = (x: number) => JSON.stringify({ model: 'mlp', version: '2', input: { features: new Array(64).fill(x) }, metadata: { marker: `m-${x}` } });
  const post = (base: string, x: number, headers: Record<string, string> = {}) =>
    fetch(`${base}/v1/jobs`, { method: 'POST', body: body(x), headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', ...headers } });

  before(async () => {
    proxy = new RedisProxy();
    await proxy.listen();
    prefix = uniquePrefix('gw-idem-stall');
    const env = { MODEL_REPOSITORY: SHIPPED_MODELS, QUEUE_PREFIX: prefix, API_KEYS: `tenant-a:${TEST_KEY}`, PORT: '0', HOST: '127.0.0.1' };
    models = await ModelRepository.load(SHIPPED_MODELS, { only: ['mlp'] });
    a = await createGateway(loadConfig({ ...env, REDIS_URL: proxy.url }), silentLogger, { models });
    aUrl = `http://127.0.0.1:${await a.listen(0, '127.0.0.1')}`;
    b = await createGateway(loadConfig({ ...env, REDIS_URL: TEST_REDIS_URL }), silentLogger, { models });
    bUrl = `http://127.0.0.1:${await b.listen(0, '127.0.0.1')}`;
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  });
  after(async () => {
    await a?.close().catch(() => undefined);
    await b?.close().catch(() => undefined);
    await proxy?.close();
    await models?.close();
    redis?.disconnect();
    if (prefix) await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it('a retry on gateway B after A’s 503 replays the job A wrote, instead of making a second one', async () => {
    const k = interactiveKeys(prefix, 'mlp', '2');
    // No worker: jobs stay queued. A first job through A loads the enqueue script (the next call is one EVALSHA).
    expect((await post(aUrl, 0.1)).status).to.equal(202);
    const stalled = proxy.stallAfter('"m-0.5"', 6500);
    const first = post(aUrl, 0.5, { 'idempotency-key': 'order-7' }).then(async (r) => ({ status: r.status, body: await r.text() }));
    await stalled;
    // Redis ran the enqueue: the job is queued...
    await waitUntil(async () => (await redis.hlen(k.index)) === 2, 5000, 'the enqueue to have run');
    // ...but its answer is late, past A's command timeout.
    const answer = await first;
    // The client retries, the load balancer picks B.
    const retry = await post(bUrl, 0.5, { 'idempotency-key': 'order-7' });
    const retried = (await retry.json()) as Job;
    const queued = Object.keys(await redis.hgetall(k.index));
    const seen = { firstAnswer: answer.status, firstCode: (JSON.parse(answer.body) as { code?: string }).code, retry: retry.status, replayed: retry.headers.get('idempotent-replayed'), retriedId: retried.id, queued };
    expect(queued.length, `jobs queued (one warm-up + the key's): ${JSON.stringify(seen)}`).to.equal(2);
    expect(retry.headers.get('idempotent-replayed'), JSON.stringify(seen)).to.equal('true');
    expect(queued).to.include(retried.id);
  });
});
