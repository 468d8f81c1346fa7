import { expect } from 'chai';
import { Redis } from 'ioredis';
import { loadConfig } from '@infer/config';
import { silentLogger } from '@infer/logger';
import { ModelRepository } from '@infer/models';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { deletePrefix, OTHER_TENANT_KEY, SHIPPED_MODELS, TEST_KEY, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { RedisProxy } from './helpers/tcp-proxy.js';
import { waitUntil } from './helpers/wait.js';

/**
 * TENANT_MAX_OPEN_BATCHES (docs/api.md "Open batches"): a tenant's batches are
 * counted "from the start of an upload until the batch is completed or
 * canceled". An upload that failed because Redis did (503 unavailable,
 * "retry") never became a batch: the client was told to send it again, and
 * BatchService.abandon exists so that such an upload does not keep "holding
 * the slot its retry needs".
 *
 * Here the reservation script (OpenBatches.reserve) ran in Redis but its
 * reply was lost with the connection (a network blip between gateway and
 * Redis). The upload answers 503; the reservation it made is never given back
 * (batch-service.ts calls reserve() outside the try whose catch abandons the
 * upload), and, having no record, it counts for UPLOAD_GRACE_MS (10 minutes):
 * the tenant, with no batch at all, is refused every batch with 429.
 */
describe('an open-batch reservation whose reply is lost', function () {
  this.timeout(60_000);
  let proxy: RedisProxy;
  let prefix: string;
  let models: ModelRepository;
  let gateway: Gateway;
  let redis: Redis;
  let base: string;

  const items = { model: 'mlp', version: '2', items: [{ custom_id: 'x', input: { features: 'not a tensor' } }] };
  const post = (key: string) =>
    fetch(`${base}/v1/batches`, { method: 'POST', body: JSON.stringify(items), headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' } });

  before(async () => {
    models = await ModelRepository.load(SHIPPED_MODELS, { only: ['mlp'], purpose: 'describe' });
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
    proxy = new RedisProxy();
    await proxy.listen();
    prefix = uniquePrefix('batch-slot-lost');
    const config = loadConfig({
      REDIS_URL: proxy.url,
      MODEL_REPOSITORY: SHIPPED_MODELS,
      QUEUE_PREFIX: prefix,
      API_KEYS: `tenant-a:${TEST_KEY},tenant-b:${OTHER_TENANT_KEY}`,
      PORT: '0',
      HOST: '127.0.0.1',
      TENANT_MAX_OPEN_BATCHES: '1',
    });
    gateway = await createGateway(config, silentLogger, { models });
    base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;
  });
  after(async () => {
    await gateway?.close().catch(() => undefined);
    await proxy?.close();
    await models?.close();
    if (prefix) await deletePrefix(TEST_REDIS_URL, prefix);
    redis?.disconnect();
  });

  it('the retry of a 503 upload whose reservation ran in Redis is accepted (202), not refused 429 quota_exceeded while the tenant has no batch', async () => {
    // Another tenant's batch first: the reservation script is now in Redis's script cache (one EVALSHA next).
    const warm = await post(OTHER_TENANT_KEY);
    expect(warm.status, await warm.clone().text()).to.equal(202);

    const openKey = `${prefix}:batches:tenant-a:open`;
    const hit = proxy.swallowAfter(openKey);
    const answer = post(TEST_KEY).then(async (r) => ({ status: r.status, body: await r.text() }));
    const conn = await hit;
    // Redis ran the reservation (tenant-a's set holds it)...
    await waitUntil(async () => (await redis.zcard(openKey)) === 1, 5000, 'the reservation to have run');
    // ...and the connection drops before its reply came back.
    conn.client.destroy();
    conn.upstream.destroy();
    const first = await answer;
    expect(first.status, `the failed upload: ${first.body}`).to.equal(503);

    // The gateway is back on Redis.
    await waitUntil(async () => (await fetch(`${base}/readyz`)).status === 200, 10_000, 'the gateway to be ready again');
    // The tenant has no batch: the 503'd upload never became one.
    const list = (await (await fetch(`${base}/v1/batches`, { headers: { authorization: `Bearer ${TEST_KEY}` } })).json()) as { data: unknown[] };
    expect(list.data, 'tenant-a has no batch at all').to.deep.equal([]);

    // Its retry, as the 503 told it to (Retry-After: 2). A fix may give the slot back in the background, as
    // BatchService.abandon does: the retry is tried for a few seconds, far less than the 10-minute grace.
    let last = { status: 0, body: '' };
    const accepted = await waitUntil(
      async () => {
        const r = await post(TEST_KEY);
        last = { status: r.status, body: await r.text() };
        return r.status !== 429;
      },
      6000,
      'the retry not to be refused 429',
    ).catch(() => false);
    expect({ accepted, status: last.status, code: last.status === 202 ? null : (JSON.parse(last.body) as { code: string }).code }, `the retry of an upload answered 503: ${last.body}`).to.deep.equal({
      accepted: true,
      status: 202,
      code: null,
    });
  });
});
