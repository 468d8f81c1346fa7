import { expect } from 'chai';
import { Redis } from 'ioredis';
import { loadConfig } from '@infer/config';
import { jobKeys, type Job } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { ModelRepository } from '@infer/models';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { deletePrefix, SHIPPED_MODELS, TEST_KEY, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { RedisProxy } from './helpers/tcp-proxy.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/api.md, GET /v1/jobs/{id} with `Prefer: wait=N`: "the answer comes as
 * soon as the job ends, or after N seconds with the job as it is then";
 * POST /v1/jobs with `Prefer: wait`: "hold the response until the job ends
 * or N seconds pass".
 *
 * A gateway hears of a job's end on its own pub/sub channel. When that
 * subscription's connection drops (a network blip, a proxy or Redis restart)
 * and the job ends before it is back, the message is gone; the waiting
 * requests must still learn of the end once the gateway is subscribed again
 * (it can read the jobs it waits for then), not sit out their whole wait.
 *
 * Only the gateway's connections go through a proxy here, which can cut the
 * subscriber's connection and hold its reconnect for a moment; the worker
 * talks to Redis directly and finishes the job meanwhile.
 */

describe('gateways: a waiting request when the gateway’s subscription blips', function () {
  this.timeout(60_000);
  let proxy: RedisProxy;
  let prefix: string;
  let models: ModelRepository;
  let gateway: Gateway | undefined;
  let worker: InferenceWorker | undefined;
  let redis: Redis;
  let base: string;

  const body = JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } });
  const api = (pathname: string, init: RequestInit = {}) =>
    fetch(base + pathname, { ...init, headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) } });

  before(async () => {
    proxy = new RedisProxy();
    await proxy.listen();
    prefix = uniquePrefix('gw-blip');
    const env = {
      MODEL_REPOSITORY: SHIPPED_MODELS,
      QUEUE_PREFIX: prefix,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      PORT: '0',
      HOST: '127.0.0.1',
      WORKER_METRICS_PORT: '0',
      MAX_WAIT_SECONDS: '60',
    };
    models = await ModelRepository.load(SHIPPED_MODELS, { only: ['mlp'] });
    gateway = await createGateway(loadConfig({ ...env, REDIS_URL: proxy.url }), silentLogger, { models });
    base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  });
  after(async () => {
    await worker?.close().catch(() => undefined);
    proxy?.release();
    await gateway?.close().catch(() => undefined);
    await proxy?.close();
    await models?.close();
    redis?.disconnect();
    if (prefix) await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it('a long poll (GET, Prefer: wait=30) and a submit with Prefer: wait=30 answer soon after the subscription is back, with the ended job', async () => {
    // Nothing runs the jobs yet: both requests wait.
    const created = await api('/v1/jobs', { method: 'POST', body });
    expect(created.status).to.equal(202);
    const { id } = (await created.json()) as Job;
    const t0 = performance.now();
    const longPoll = api(`/v1/jobs/${id}`, { headers: { prefer: 'wait=30' } }).then(async (r) => ({ status: r.status, job: (await r.json()) as Job, at: performance.now() }));
    const waitingSubmit = api('/v1/jobs', { method: 'POST', body, headers: { prefer: 'wait=30' } }).then(async (r) => ({ status: r.status, job: (await r.json()) as Job, at: performance.now() }));
    await waitUntil(() => gateway!.waiters.size === 2, 5000, 'both requests to wait');
    // The long poll's channel is on the job's envelope, the submit's job in the queue.
    const k = jobKeys(prefix, id);
    await waitUntil(async () => {
      const where = await redis.hget(k.index, id);
      return where ? ((await redis.hget(`${k.taggedPrefix}:${where}`, 'w')) ?? '').includes(gateway!.waiters.channel) : false;
    }, 5000, 'the long poll to be registered on the envelope');

    expect(proxy.cutSubscribers(), 'subscriber connections cut').to.equal(1);
    // The subscriber tries to reconnect; the proxy holds it.
    await waitUntil(() => proxy.heldCount > 0, 5000, 'the subscriber to try to reconnect');

    // Meanwhile a worker (straight to Redis) runs both jobs.
    worker = await createWorker(loadConfig({ REDIS_URL: TEST_REDIS_URL, MODEL_REPOSITORY: SHIPPED_MODELS, QUEUE_PREFIX: prefix, WORKER_METRICS_PORT: '0', HOST: '127.0.0.1' }), silentLogger, { models });
    await waitUntil(async () => (await redis.hlen(k.index)) === 0 && (await redis.exists(k.record)) === 1, 15_000, 'both jobs to have ended');

    // The subscription comes back.
    const released = performance.now();
    proxy.release();
    const [polled, submitted] = await Promise.all([longPoll, waitingSubmit]);
    const late = { longPollMs: Math.round(polled.at - released), submitMs: Math.round(submitted.at - released), waitedMs: Math.round(performance.now() - t0) };
    expect(polled.job.status).to.equal('succeeded');
    expect(submitted.job.status).to.equal('succeeded');
    expect(submitted.status).to.equal(200);
    // Ended well before the subscription came back: answered within moments of it, not at the end of the 30 s wait.
    expect(late.longPollMs, JSON.stringify(late)).to.be.below(5000);
    expect(late.submitMs, JSON.stringify(late)).to.be.below(5000);
    expect(gateway!.waiters.size).to.equal(0);
  });
});
