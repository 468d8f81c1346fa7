import { expect } from 'chai';
import { Redis, ReplyError } from 'ioredis';
import { interactiveKeys, type Job } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { ModelRepository } from '@infer/models';
import { InteractiveWorker } from '../apps/worker/src/interactive/interactive-worker.js';
import { pollJob } from './helpers/jobs.js';
import { SHIPPED_MODELS, startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { RedisProxy } from './helpers/tcp-proxy.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A worker reads an envelope's large inputs (`<envelope>:in`) with one MGET
 * after its take (EnvelopeQueue.withInputs). When that MGET errs (a
 * transient error reply: here BUSY, what Redis answers while a long script
 * runs; the store connection's `maxRetriesPerRequest: null` only covers
 * connection loss), it is tried again, as FINISH is: a take given up would
 * leave its envelopes, already moved to `active` and locked, to lapse into
 * a stall ("its worker died or hung"), the job waiting WORKER_LOCK_MS for
 * nothing, and after maxStalledCount + 1 such blips failed `worker_lost`
 * though no worker died. A connection reset before the MGET's reply is
 * covered by ioredis itself: it sends the MGET again after reconnecting. A
 * reset that loses the take's own reply is not: the FETCH sent again finds
 * the envelope gone from `wait`, so the take looks in `active` for what it
 * locked (EnvelopeQueue.recover).
 */

// ocr-cls (test/fixtures/served): one FP32 [3, 48, 192] input, 110,592 bytes: over the 16 KiB threshold.
const image = Buffer.from(new Float32Array(3 * 48 * 192).fill(0.5).buffer).toString('base64');
const body = JSON.stringify({ model: 'ocr-cls', input: { x: { datatype: 'FP32', shape: [3, 48, 192], b64: image } } });

describe('a take and its inputs read, meeting Redis errors', function () {
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

  /**
   * A platform with no worker of its own, and an InteractiveWorker for
   * ocr-cls v1 whose first `blips` MGETs answer BUSY; with `viaProxy`, its
   * store connection goes through a proxy the test can cut; `onRead` sees
   * each MGET's keys first.
   */
  async function start(lockMs: number, blips: number, viaProxy = false, onRead?: (keys: string[]) => Promise<void>): Promise<{ platform: TestPlatform; mgets: () => number }> {
    const platform = await startPlatform({ worker: false });
    p = platform;
    if (viaProxy) {
      proxy = new RedisProxy();
      await proxy.listen();
    }
    const connection = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
    const storeConnection = new Redis(proxy?.url ?? TEST_REDIS_URL, { maxRetriesPerRequest: null, enableAutoPipelining: true });
    storeConnection.on('error', () => undefined);
    connections = [connection, storeConnection];
    let calls = 0;
    const real = storeConnection.mgetBuffer.bind(storeConnection) as (...keys: string[]) => Promise<Array<Buffer | null>>;
    // The MGET reaches a Redis busy with a script: one error reply, the next call is answered as usual.
    (storeConnection as unknown as { mgetBuffer: (...keys: string[]) => Promise<Array<Buffer | null>> }).mgetBuffer = async (...keys: string[]) => {
      await onRead?.(keys);
      if (++calls <= blips) throw new ReplyError('BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSCRIPT.');
      return real(...keys);
    };
    worker = new InteractiveWorker({
      model: models.find('ocr-cls', '1')!,
      connection,
      storeConnection,
      prefix: platform.prefix,
      lockMs,
      resultTtlMs: 60_000,
      logger: silentLogger,
      blockSeconds: 1,
    });
    worker.start();
    return { platform, mgets: () => calls };
  }

  async function submit(platform: TestPlatform): Promise<Job> {
    const res = await platform.api('/v1/jobs', { method: 'POST', body });
    expect(res.status).to.equal(202);
    return (await res.json()) as Job;
  }

  /** The `stalled` events BullMQ's stalled check wrote to the queue's event stream. */
  async function stalledEvents(platform: TestPlatform): Promise<number> {
    const entries = await redis.xrange(interactiveKeys(platform.prefix, 'ocr-cls', '1').base + 'events', '-', '+');
    return entries.filter(([, fields]) => fields[0] === 'event' && fields[1] === 'stalled').length;
  }

  it('one BUSY reply: the job runs at once, without waiting for its lock to lapse and without counting a stall', async () => {
    const lockMs = 4000;
    const { platform, mgets } = await start(lockMs, 1);
    const job = await submit(platform);
    const ended = await pollJob(platform, job.id, 20_000);
    expect(mgets(), 'the MGET erred once').to.be.at.least(2);
    expect(ended.status).to.equal('succeeded');
    // No `stalled` event, and queue_ms under lockMs (the envelope did not wait for its lock to lapse).
    expect({ stalls: await stalledEvents(platform), waitedForTheLock: ended.metrics!.queue_ms >= lockMs }, `queue_ms ${ended.metrics!.queue_ms}`).to.deep.equal({ stalls: 0, waitedForTheLock: false });
  });

  it('three BUSY replies: the job still succeeds, not worker_lost', async () => {
    const { platform, mgets } = await start(1000, 3);
    const job = await submit(platform);
    const ended = await pollJob(platform, job.id, 30_000);
    expect(mgets()).to.be.at.least(4);
    expect({ status: ended.status, code: ended.error?.code ?? null }).to.deep.equal({ status: 'succeeded', code: null });
  });

  it('its reply lost with its connection: sent again, the job runs with no stall', async () => {
    const lockMs = 4000;
    const { platform } = await start(lockMs, 0, true);
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

  it('is tried again only while the take holds its lock (WORKER_LOCK_MS at its least, 1 s), then left to the stalled check', async () => {
    const lockMs = 1000;
    const lockAtReads: number[] = [];
    // The take's lock (FETCH: SET <envelope>:lock token PX lockMs) lies beside the inputs key (<envelope>:in).
    const { platform, mgets } = await start(lockMs, 3, false, async (keys) => void lockAtReads.push(await redis.pttl(keys[0]!.replace(/:in$/, ':lock'))));
    const job = await submit(platform);
    const ended = await pollJob(platform, job.id, 20_000);
    expect(ended.status).to.equal('succeeded');
    expect(mgets()).to.be.at.least(4);
    // PTTL > 0 while the lock holds (-2 once it has lapsed): no read after, where another worker may have the envelope.
    expect(lockAtReads.every((ms) => ms > 0), `the lock's PTTL at each inputs read: ${lockAtReads.join(', ')}`).to.equal(true);
  });

  it("the blocking take's own reply lost with its connection: the envelope it took runs at once, no stall", async () => {
    const lockMs = 4000;
    const { platform } = await start(lockMs, 0, true);
    const k = interactiveKeys(platform.prefix, 'ocr-cls', '1');
    // The worker is idle: blocked on the marker (BZPOPMIN) with its take (FETCH) behind, on a connection of its own.
    const conn = await proxy!.swallowAfter(`${k.marker}\r\n`);
    const job = await submit(platform);
    // FETCH ran: the envelope is active, locked with the take's token. Its reply never comes; the connection drops,
    // and ioredis sends BZPOPMIN and FETCH again, which find nothing left in the queue.
    await waitUntil(async () => (await redis.llen(k.active)) === 1, 5000, 'the take to run');
    conn.client.destroy();
    conn.upstream.destroy();
    const ended = await pollJob(platform, job.id, 20_000);
    expect(ended.status).to.equal('succeeded');
    expect({ stalls: await stalledEvents(platform), waitedForTheLock: ended.metrics!.queue_ms >= lockMs }, `queue_ms ${ended.metrics!.queue_ms}`).to.deep.equal({ stalls: 0, waitedForTheLock: false });
  });
});
