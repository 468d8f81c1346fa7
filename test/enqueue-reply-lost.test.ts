import { expect } from 'chai';
import { Redis } from 'ioredis';
import { loadConfig } from '@infer/config';
import { allowanceValue, interactiveKeys, type Job } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { ModelRepository } from '@infer/models';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { deletePrefix, OTHER_TENANT_KEY, SHIPPED_MODELS, TEST_KEY, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { RedisProxy } from './helpers/tcp-proxy.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A gateway's Redis connection drops after Redis ran a submit's enqueue but
 * before its reply came back (a network blip, a load balancer or proxy
 * between the gateway and Redis cutting connections). The client library
 * reconnects; a client library that sent the unanswered command again would
 * run the enqueue a second time for the same envelope (ioredis does, unless
 * told not to: the gateway's command connection is).
 *
 * docs/architecture.md (Keys): the queue's `queued` count is "instances
 * accepted and not yet taken (what MAX_QUEUE_DEPTH counts)", and the
 * `tenants` hash is each tenant's "instances accepted and not yet taken
 * (what TENANT_MAX_QUEUED counts) … a field goes back to 0 as its jobs are
 * taken or canceled". docs/api.md: `429 quota_exceeded` only "when it would
 * take its tenant past TENANT_MAX_QUEUED".
 *
 * Here one job was accepted, and it ran and ended: nothing of the tenant is
 * queued, so its next job must be accepted (TENANT_MAX_QUEUED=1), and the
 * queue's count must be back to 0.
 */

describe('gateways: an enqueue whose reply is lost to a connection blip', function () {
  this.timeout(60_000);
  let proxy: RedisProxy | undefined;
  let prefix: string | undefined;
  let models: ModelRepository;
  let gateway: Gateway | undefined;
  let worker: InferenceWorker | undefined;
  let redis: Redis;
  let base: string;
  let workerEnv: Record<string, string>;

  const body = (x: number) => JSON.stringify({ model: 'mlp', version: '2', input: { features: new Array(64).fill(x) }, metadata: { marker: `m-${x}` } });
  const post = (key: string, x: number, headers: Record<string, string> = {}) =>
    fetch(`${base}/v1/jobs`, { method: 'POST', body: body(x), headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers } });

  before(async () => {
    models = await ModelRepository.load(SHIPPED_MODELS, { only: ['mlp'] });
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  });
  after(async () => {
    await models?.close();
    redis?.disconnect();
  });

  /** A gateway whose Redis connections go through the proxy; the worker (started later) talks to Redis directly. */
  async function start(extra: Record<string, string>): Promise<void> {
    proxy = new RedisProxy();
    await proxy.listen();
    prefix = uniquePrefix('gw-resend');
    workerEnv = {
      MODEL_REPOSITORY: SHIPPED_MODELS,
      QUEUE_PREFIX: prefix,
      API_KEYS: `tenant-a:${TEST_KEY},tenant-b:${OTHER_TENANT_KEY}`,
      PORT: '0',
      HOST: '127.0.0.1',
      WORKER_METRICS_PORT: '0',
      ...extra,
    };
    gateway = await createGateway(loadConfig({ ...workerEnv, REDIS_URL: proxy.url }), silentLogger, { models });
    base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;
  }

  afterEach(async () => {
    await worker?.close().catch(() => undefined);
    await gateway?.close().catch(() => undefined);
    await proxy?.close();
    if (prefix) await deletePrefix(TEST_REDIS_URL, prefix);
    worker = undefined;
    gateway = undefined;
    proxy = undefined;
    prefix = undefined;
  });

  /** Submit tenant-a's job `x` and drop the connection once Redis has run its enqueue, before the reply is back. */
  async function submitThroughBlip(x: number, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
    const k = interactiveKeys(prefix!, 'mlp', '2');
    // Another tenant's job first: the enqueue script is loaded in Redis, so the next call is one EVALSHA.
    expect((await post(OTHER_TENANT_KEY, 0.1)).status).to.equal(202);
    const hit = proxy!.swallowAfter(`"m-${x}"`);
    const answer = post(TEST_KEY, x, headers).then(async (r) => ({ status: r.status, body: await r.text() }));
    const conn = await hit;
    // Redis ran it (the job is in the queue's index)...
    await waitUntil(async () => (await redis.hlen(k.index)) === 2, 5000, 'the enqueue to have run');
    // ...and the connection drops before its reply got back.
    conn.client.destroy();
    conn.upstream.destroy();
    const first = await answer;
    expect(await redis.hlen(k.index), 'jobs in the queue: the warm-up and tenant-a’s').to.equal(2);
    return first;
  }

  async function runAll(): Promise<void> {
    worker = await createWorker(loadConfig({ ...workerEnv, REDIS_URL: TEST_REDIS_URL }), silentLogger, { models });
    await gateway!.catalog.refresh();
    const k = interactiveKeys(prefix!, 'mlp', '2');
    await waitUntil(async () => (await redis.hlen(k.index)) === 0, 15_000, 'every queued job to have run');
  }

  it('the job is counted once: the enqueue is not sent again, the answer says Redis failed (503), and once the job has run the queue depth is back to 0', async () => {
    await start({});
    const first = await submitThroughBlip(0.5);
    await runAll();
    const k = interactiveKeys(prefix!, 'mlp', '2');
    const queued = Number((await redis.get(k.queued)) ?? 0);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    const depth = /^infer_queue_depth\{model="mlp",version="2"\} (\S+)$/m.exec(metrics)?.[1];
    const seen = { answer: first.status, queuedKey: queued, infer_queue_depth: depth, waitList: await redis.llen(k.wait) };
    // Whether the enqueue ran cannot be known from a lost reply: the answer is a 503 (a client retries it with
    // an Idempotency-Key for exactly once, as the next test does), never a job counted twice.
    expect(first.status, JSON.stringify(seen)).to.equal(503);
    expect(queued, `instances counted as queued with nothing queued: ${JSON.stringify(seen)}`).to.equal(0);
    expect(depth, JSON.stringify(seen)).to.equal('0');
  });

  it('with an Idempotency-Key and TENANT_MAX_QUEUED: the job that was written is the key’s job; a retry replays it instead of making a second', async () => {
    await start({ TENANT_MAX_QUEUED: '1' });
    const k = interactiveKeys(prefix!, 'mlp', '2');
    // A tenant's first envelope to a queue is refused for want of an allowance there, and written after the
    // gateway made room under the limits lock: the allowance a first job would leave, so that the blip below
    // hits the one enqueue that writes.
    await redis.hset(k.allowances, 'tenant-a', allowanceValue(1, 1));
    const first = await submitThroughBlip(0.5, { 'idempotency-key': 'order-1' });
    await runAll();
    // The client retries the same request with the same key (to this gateway or any other).
    const retry = await post(TEST_KEY, 0.5, { 'idempotency-key': 'order-1' });
    const retried = (await retry.json()) as Job;
    // Jobs of tenant-a that exist now: every record and queued job under the prefix, by tenant.
    const records: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}:*:job:*`, 'COUNT', 1000);
      cursor = next;
      records.push(...found);
    } while (cursor !== '0');
    const ofA = [];
    for (const key of records) {
      const rec = (await redis.getBuffer(key))!;
      if (rec.toString('latin1').includes('"tenant-a"')) ofA.push(key.split(':job:')[1]);
    }
    const pendingA = Object.keys(await redis.hgetall(k.index));
    const seen = { firstAnswer: first.status, firstBody: first.body.slice(0, 160), retry: retry.status, replayed: retry.headers.get('idempotent-replayed'), endedJobsOfA: ofA, stillQueued: pendingA };
    expect(ofA.length + pendingA.length, `jobs made for one Idempotency-Key: ${JSON.stringify(seen)}`).to.equal(1);
    expect(retry.headers.get('idempotent-replayed'), JSON.stringify(seen)).to.equal('true');
    expect(ofA).to.include(retried.id);
  });
});
