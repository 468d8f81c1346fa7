import { expect } from 'chai';
import http from 'node:http';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { ABANDONED_UPLOAD_MS, bulkQueue, keys, webhookQueue, type Batch } from '@infer/contract';
import { BatchStore } from '@infer/batch-store';
import { silentLogger } from '@infer/logger';
import { BulkWorker, Sweeper } from '../apps/worker/src/index.js';
import { getBatch, mlpFeatures, submitBatch, toNdjson, uploadNdjson, waitForBatchEnd } from './helpers/batches.js';
import { SHIPPED_MODELS, TEST_KEY, TEST_REDIS_URL, startPlatform, type TestPlatform } from './helpers/platform.js';
import { freePort } from './helpers/redis-server.js';
import { Spawned } from './helpers/spawned.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A process that dies at the wrong moment of a batch's life loses nothing:
 * - the worker (or gateway) that ended a batch and died before queueing its
 *   `batch.completed`: the batch stays in the index of unended batches until
 *   its webhook is queued, and the workers' sweep queues it (once: one event
 *   id per batch);
 * - a gateway killed mid-upload: its batch is never sealed and its client
 *   never got the id; past any request's time limit the sweep discards it,
 *   and the tenant's open-batch slot it held comes free.
 */

const lines = (n: number) => toNdjson(Array.from({ length: n }, (_, i) => ({ custom_id: `r${i}`, input: { features: mlpFeatures(i) } })));

describe('batches: a process dying between ending a batch and queueing its batch.completed', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let redis: Redis;
  let receiver: WebhookReceiver<{ type: string; data: Batch }>;
  before(async () => {
    receiver = await startWebhookReceiver();
    p = await startPlatform({ worker: false, env: { WEBHOOK_ALLOW_PRIVATE: 'true' } });
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  });
  after(async () => {
    redis.disconnect();
    await p?.close();
    await receiver?.close();
  });

  /** A batch store whose process dies right after a script ended a batch, before telling of it. */
  const dyingStore = () =>
    new BatchStore(redis, {
      prefix: p.prefix,
      resultTtlMs: p.config.resultTtlMs,
      onEnded: () => {
        throw new Error('the process died here');
      },
    });

  const deliveriesOf = async (id: string) => {
    const res = await p.api(`/v1/batches/${id}/webhook_deliveries`);
    expect(res.status).to.equal(200);
    return ((await res.json()) as { data: Array<{ id: string; attempt_count: number; state: string }> }).data;
  };

  it('is sent by the next sweep, once, and a sweep after it was sent sends nothing more', async () => {
    const batch = await submitBatch(p, { ndjson: lines(10), query: `model=mlp&webhook=${encodeURIComponent(receiver.url)}` });
    // The chunk runs on a worker whose process "dies" right after the script that completed the batch.
    const dying = dyingStore();
    const bulk = new BulkWorker({ model: p.gateway.models.resolve('mlp'), connection: redis, store: dying, logger: silentLogger, prefix: p.prefix, lockMs: 30_000 });
    try {
      bulk.start();
      expect((await waitForBatchEnd(p, batch.id)).status).to.equal('completed');
    } finally {
      await bulk.close();
    }
    const running = keys(p.prefix).runningBatches;
    expect(await redis.zscore(running, batch.id), 'still indexed: its webhook is owed').to.not.equal(null);
    expect(await deliveriesOf(batch.id)).to.have.length(0);

    // A worker comes (or any live one's timer fires): its sweep queues the event, and the worker delivers it.
    const worker = await p.startWorker();
    await worker.sweep();
    const delivery = await waitUntil(() => receiver.deliveries.find((d) => d.event.data.id === batch.id), 15_000, 'the batch.completed delivery');
    expect(delivery.event.type).to.equal('batch.completed');
    expect(delivery.event.data).to.deep.include({ status: 'completed' });
    expect(delivery.event.data.request_counts).to.deep.equal({ total: 10, succeeded: 10, failed: 0, canceled: 0 });
    expect(await redis.zscore(running, batch.id), 'dropped once told').to.equal(null);
    await waitUntil(async () => (await deliveriesOf(batch.id))[0]?.state === 'succeeded', 10_000, 'the delivery recorded');

    // The sweeping process itself dies after queueing the event and before dropping the index entry: told again, sent once.
    await redis.zadd(running, Date.parse(batch.created_at), batch.id);
    await worker.sweep();
    expect(await redis.zscore(running, batch.id)).to.equal(null);
    const queue = new Queue(webhookQueue(p.prefix).name, { connection: redis, prefix: webhookQueue(p.prefix).prefix });
    try {
      expect(await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized')).to.deep.equal({ waiting: 0, active: 0, delayed: 0, prioritized: 0 });
    } finally {
      await queue.close();
    }
    const [only, ...more] = await deliveriesOf(batch.id);
    expect(more).to.have.length(0);
    expect(only).to.include({ state: 'succeeded', attempt_count: 1 });
    expect(receiver.deliveries.filter((d) => d.event.data.id === batch.id)).to.have.length(1);
  });

  it('a batch canceled by a gateway that died before queueing the event is told by the sweep too', async () => {
    let batchId = '';
    // The live worker (started above) must not run the batch to its end before the cancel: its chunk waits in a paused queue.
    const mlp = p.gateway.models.resolve('mlp');
    const ref = bulkQueue(p.prefix, mlp.name, mlp.version);
    const chunks = new Queue(ref.name, { connection: redis, prefix: ref.prefix });
    await chunks.pause();
    try {
      const batch = await submitBatch(p, { ndjson: lines(5), query: `model=mlp&webhook=${encodeURIComponent(receiver.url)}` });
      const dying = dyingStore();
      expect((await dying.cancel(batch.id, 'tenant-a', Date.now())).outcome).to.equal('canceled');
      batchId = batch.id;
    } finally {
      await chunks.resume();
      await chunks.close();
    }
    await p.worker!.sweep();
    const delivery = await waitUntil(() => receiver.deliveries.find((d) => d.event.data.id === batchId), 15_000, 'the batch.completed delivery');
    expect(delivery.event.data.status).to.equal('canceled');
  });
});

describe('batches: a gateway killed mid-upload', function () {
  this.timeout(90_000);
  let p: TestPlatform;
  let redis: Redis;
  let gateway: Spawned | undefined;
  before(async () => {
    p = await startPlatform({ env: { TENANT_MAX_OPEN_BATCHES: '1' } });
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  });
  after(async () => {
    gateway?.kill();
    redis.disconnect();
    await p?.close();
  });

  it('leaves a batch no client knows, holding the open-batch slot, until the sweep discards it past the upload time limit', async () => {
    const port = await freePort();
    gateway = new Spawned('start:gateway', {
      REDIS_URL: TEST_REDIS_URL,
      QUEUE_PREFIX: p.prefix,
      MODEL_REPOSITORY: SHIPPED_MODELS,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      PORT: String(port),
      HOST: '127.0.0.1',
      TENANT_MAX_OPEN_BATCHES: '1',
    });
    await gateway.waitForLog('gateway listening', 30_000);
    // An upload of more than one chunk, whose body never ends: the gateway registers its first chunk and waits for more.
    const upload = http.request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/v1/batches?model=mlp',
      headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/x-ndjson' },
    });
    upload.on('error', () => undefined);
    upload.write(lines(3000));
    const running = keys(p.prefix).runningBatches;
    // Its first chunk registered: by then the slot's reservation is marked as the batch's (a gateway killed
    // before that holds the slot for the reservation's own grace, 10 minutes, then it goes by itself).
    const [id] = await waitUntil(async () => {
      const ids = await redis.zrange(running, '0', '-1');
      return ids.length > 0 && Number(await redis.hget(keys(p.prefix).batch(ids[0]!), 'chunks')) >= 1 ? ids : undefined;
    }, 30_000, 'the upload registered a chunk');
    gateway.signalGroup('SIGKILL');
    await gateway.exit(10_000);
    upload.destroy();

    // Nobody got its id, yet it holds the tenant's only slot.
    const second = await uploadNdjson(p, lines(2));
    expect(second.status).to.equal(429);
    const store = new BatchStore(redis, { prefix: p.prefix, resultTtlMs: p.config.resultTtlMs });
    const sweepAt = (now: number) => new Sweeper({ redis, prefix: p.prefix, batchStore: store, served: [], logger: silentLogger, now: () => now }).sweep();

    // Within the limit, an upload may still be going on: the sweep leaves it.
    expect((await sweepAt(Date.now())).abandonedUploads).to.equal(0);
    expect((await getBatch(p, id!)).id).to.equal(id);

    expect((await sweepAt(Date.now() + ABANDONED_UPLOAD_MS + 1000)).abandonedUploads).to.equal(1);
    expect((await p.api(`/v1/batches/${id}`)).status).to.equal(404);
    const listed = (await (await p.api('/v1/batches')).json()) as { data: Batch[] };
    expect(listed.data.map((b) => b.id)).to.not.include(id);
    expect(await redis.exists(...store.keysOf(id!, 'tenant-a').slice(0, 4))).to.equal(0);
    expect(await redis.zscore(running, id!)).to.equal(null);

    // The slot is free: the tenant's next upload is taken and runs (the dead upload's chunk left in the queue is skipped).
    const next = await uploadNdjson(p, lines(2));
    expect(next.status).to.equal(202);
    const ended = await waitForBatchEnd(p, ((await next.json()) as Batch).id);
    expect(ended.request_counts).to.deep.include({ total: 2, succeeded: 2 });
  });
});
