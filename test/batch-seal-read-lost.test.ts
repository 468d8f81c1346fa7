import { expect } from 'chai';
import type { Batch } from '@infer/contract';
import { Redis } from 'ioredis';
import { loadConfig } from '@infer/config';
import { silentLogger } from '@infer/logger';
import { ModelRepository } from '@infer/models';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { mlpFeatures, toNdjson } from './helpers/batches.js';
import { deletePrefix, SHIPPED_MODELS, TEST_KEY, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { RedisProxy } from './helpers/tcp-proxy.js';

/**
 * An upload is all or nothing for the client: a batch it is not given the
 * id of (a 503, a 400) must not exist, and one that exists must be answered
 * 202, since a client told 503 sends it again and its items would run twice
 * (the rule the job API keeps for a job stored before Redis failed).
 *
 * Here the seal ran in Redis and was answered; only the read of the record
 * that builds the 202's body loses its reply with the connection. The batch
 * is in and will run, so the answer is 202 with the batch as the upload left
 * it, not a 503.
 */
describe('batches: an upload whose last read fails after its batch was sealed', function () {
  this.timeout(60_000);
  let proxy: RedisProxy;
  let prefix: string;
  let models: ModelRepository;
  let gateway: Gateway;
  let redis: Redis;
  let base: string;

  const upload = () =>
    fetch(`${base}/v1/batches?model=mlp&version=2`, {
      method: 'POST',
      body: toNdjson([{ custom_id: 'only', input: { features: mlpFeatures(0) } }]),
      headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/x-ndjson' },
    });

  before(async () => {
    models = await ModelRepository.load(SHIPPED_MODELS, { only: ['mlp'], purpose: 'describe' });
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
    proxy = new RedisProxy();
    await proxy.listen();
    prefix = uniquePrefix('review-seal-read');
    const config = loadConfig({
      REDIS_URL: proxy.url,
      MODEL_REPOSITORY: SHIPPED_MODELS,
      QUEUE_PREFIX: prefix,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      PORT: '0',
      HOST: '127.0.0.1',
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

  /** Batch records under this prefix, as Redis holds them. */
  async function records(): Promise<Array<Record<string, string>>> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}:batch:{*}`, 'COUNT', 1000);
      cursor = next;
      keys.push(...found.filter((k) => k.endsWith('}')));
    } while (cursor !== '0');
    return Promise.all(keys.map((k) => redis.hgetall(k)));
  }

  it('answers 202 with the sealed batch when reading its record back fails: a 503 would have the client send it again', async () => {
    // A first upload: every script is in Redis's cache, and the connection is up.
    const warm = await upload();
    expect(warm.status, await warm.clone().text()).to.equal(202);
    const before = (await records()).length;

    // The read of the new batch's record (HGETALL <prefix>:batch:{<36-character id>}) loses its reply with the connection.
    const key = `${prefix}:batch:{`;
    const hit = proxy.swallowAfter(`hgetall\r\n$${key.length + 37}\r\n${key}`);
    const answer = upload().then(async (r) => ({ status: r.status, body: await r.text() }));
    const conn = await hit;
    conn.client.destroy();
    conn.upstream.destroy();
    const first = await answer;

    expect(first.status, first.body).to.equal(202);
    const batch = JSON.parse(first.body) as Batch;
    expect(batch).to.include({ object: 'batch', model: 'mlp', version: '2', status: 'queued' });
    expect(batch.request_counts).to.deep.equal({ total: 1, succeeded: 0, failed: 0, canceled: 0 });
    // The batch answered is the one Redis holds, and the only one the upload made.
    const now = await records();
    expect(now.length).to.equal(before + 1);
    expect(now.map((r) => r.id)).to.include(batch.id);
  });
});
