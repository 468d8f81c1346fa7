import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, type Job } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { ModelRepository } from '@infer/models';
import { InteractiveWorker } from '../apps/worker/src/interactive/interactive-worker.js';
import { pollJob } from './helpers/jobs.js';
import { SHIPPED_MODELS, startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { RedisProxy } from './helpers/tcp-proxy.js';

/**
 * A connection reset right after a take, before the inputs MGET's reply
 * (EnvelopeQueue.withInputs). The worker's connections (maxRetriesPerRequest:
 * null) send unanswered commands again after reconnecting: the MGET is
 * answered then, and the job runs at once, not after its lock lapses into a
 * stall.
 */

const image = Buffer.from(new Float32Array(3 * 48 * 192).fill(0.5).buffer).toString('base64');
const body = JSON.stringify({ model: 'ocr-cls', input: { x: { datatype: 'FP32', shape: [3, 48, 192], b64: image } } });

describe('a connection reset between a take and its inputs read', function () {
  this.timeout(40_000);
  let p: TestPlatform | undefined;
  let models: ModelRepository;
  let worker: InteractiveWorker | undefined;
  let proxy: RedisProxy | undefined;
  let connections: Redis[] = [];
  let redis: Redis;

  before(async () => {
    models = await ModelRepository.load(SHIPPED_MODELS, { only: ['ocr-cls'] });
  });
  after(async () => {
    await models?.close();
  });
  beforeEach(() => {
    redis = new Redis(TEST_REDIS_URL);
  });
  afterEach(async () => {
    await worker?.close();
    worker = undefined;
    for (const c of connections) c.disconnect();
    connections = [];
    await proxy?.close();
    proxy = undefined;
    redis.disconnect();
    await p?.close();
    p = undefined;
  });

  /** A platform with no worker of its own, and an InteractiveWorker for ocr-cls v1 whose store connection (and its blocking duplicate) go through a proxy. */
  async function start(lockMs: number): Promise<TestPlatform> {
    const platform = await startPlatform({ worker: false });
    p = platform;
    proxy = new RedisProxy();
    await proxy.listen();
    const connection = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const storeConnection = new Redis(proxy.url, { maxRetriesPerRequest: null, enableAutoPipelining: true });
    storeConnection.on('error', () => undefined);
    connections = [connection, storeConnection];
    worker = new InteractiveWorker({ model: models.find('ocr-cls', '1')!, connection, storeConnection, prefix: platform.prefix, lockMs, resultTtlMs: 60_000, logger: silentLogger, blockSeconds: 5 });
    worker.start();
    return platform;
  }

  async function submit(platform: TestPlatform): Promise<Job> {
    const res = await platform.api('/v1/jobs', { method: 'POST', body });
    expect(res.status).to.equal(202);
    return (await res.json()) as Job;
  }

  async function stalledEvents(platform: TestPlatform): Promise<number> {
    const entries = await redis.xrange(interactiveKeys(platform.prefix, 'ocr-cls', '1').base + 'events', '-', '+');
    return entries.filter(([, fields]) => fields[0] === 'event' && fields[1] === 'stalled').length;
  }

  it('the inputs MGET\'s reply lost with its connection is resent; the job runs with no stall', async () => {
    const lockMs = 4000;
    const platform = await start(lockMs);
    // The MGET names the inputs key (`…:in`); nothing else this connection sends ends a key so.
    const hit = proxy!.swallowAfter(':in\r\n');
    const job = await submit(platform);
    const conn = await hit;
    conn.client.destroy();
    conn.upstream.destroy();
    const ended = await pollJob(platform, job.id, 20_000);
    expect(ended.status).to.equal('succeeded');
    expect({ stalls: await stalledEvents(platform), waitedForTheLock: ended.metrics!.queue_ms >= lockMs }).to.deep.equal({ stalls: 0, waitedForTheLock: false });
  });
});
