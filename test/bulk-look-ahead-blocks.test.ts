import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { Batch } from '@infer/contract';
import { freePort } from '../scripts/lib/free-port.js';
import { SHIPPED_MODELS, TEST_KEY } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A bulk worker runs one chunk and takes the next one meanwhile. When the
 * queue is empty while a chunk runs (the gateway still reading the upload,
 * as usual: a worker runs the shipped MLP faster than a gateway reads
 * NDJSON), the look ahead must block on the queue's marker, as an idle
 * worker's does, not ask BullMQ again at once: that was a moveToActive a
 * Redis round trip for as long as the chunk ran, ~15 a chunk of 2,048 rows
 * on the benchmark machine, twice the Redis commands a row. BullMQ's
 * moveToActive takes a chunk with one RPOPLPUSH, whether or not one waits;
 * with no interactive job about, nothing else calls it. Counted from INFO
 * commandstats on a redis-server of the test's own, with the gateway and
 * the worker as processes of their own, as deployed (the pace at which
 * chunks come, which sets how often the queue is found empty, is theirs).
 */
describe('a bulk worker looking ahead while a chunk runs blocks on an empty queue', function () {
  this.timeout(180_000);
  let redis: OwnRedis;
  let admin: Redis;
  let gateway: Spawned;
  let worker: Spawned;
  let base: string;

  before(async () => {
    redis = await OwnRedis.start();
    admin = new Redis(redis.url);
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const env = { REDIS_URL: redis.url, QUEUE_PREFIX: 'look-ahead', MODEL_REPOSITORY: SHIPPED_MODELS, WORKER_MODELS: 'mlp', WORKER_METRICS_PORT: '0' };
    gateway = new Spawned('start:gateway', { ...env, API_KEYS: `tenant-a:${TEST_KEY}`, PORT: String(port), HOST: '127.0.0.1' });
    worker = new Spawned('start:worker', env);
    await gateway.waitForLog('gateway listening', 60_000);
  });
  after(async () => {
    for (const p of [worker, gateway]) {
      if (!p?.groupAlive()) continue;
      p.signalGroup('SIGTERM');
      await p.exit(20_000).catch(() => p.kill());
    }
    admin?.disconnect();
    await redis?.stop();
  });

  const takes = async (): Promise<number> => {
    const stats = await admin.info('commandstats');
    return Number(/^cmdstat_rpoplpush:calls=(\d+)/m.exec(stats)?.[1] ?? 0) + Number(/^cmdstat_lmove:calls=(\d+)/m.exec(stats)?.[1] ?? 0);
  };

  const upload = async (rows: number): Promise<void> => {
    const body = Array.from({ length: rows }, (_, r) => JSON.stringify({ input: { features: Array.from({ length: 64 }, (_, k) => Math.sin(r + k)) } })).join('\n');
    const headers = { authorization: `Bearer ${TEST_KEY}` };
    const batch = await waitUntil(async () => {
      const res = await fetch(`${base}/v1/batches?model=mlp`, { method: 'POST', headers: { ...headers, 'content-type': 'application/x-ndjson' }, body });
      return res.status === 202 ? ((await res.json()) as Batch) : null; // 503 until the worker is in the fleet
    }, 60_000, 'the batch to be accepted');
    const ended = await waitUntil(async () => {
      const b = (await (await fetch(`${base}/v1/batches/${batch.id}`, { headers })).json()) as Batch;
      return b.status === 'completed' ? b : null;
    }, 120_000, 'the batch to end');
    expect(ended.request_counts).to.include({ total: rows, succeeded: rows });
  };

  it('takes a few times a chunk, however long its run', async () => {
    await upload(10_000); // warm: the version loaded, its queues made, both processes' code compiled
    const chunks = 24;
    const before = await takes();
    await upload(chunks * 2048); // chunks of 2,048 rows (DEFAULT_CHUNK_LIMITS)
    const taken = (await takes()) - before;
    // Each chunk, where the worker outruns the upload: the take that brings it, one look ahead that
    // finds the queue empty, and a blocking look that pops the marker BullMQ leaves at every take and
    // finds nothing (3); a blocked look that times out (5 s, the bulk side's block) or another idle
    // queue's adds one now and then. Looking again at once while a chunk ran cost ~15 a chunk.
    expect(taken, `${taken} takes for ${chunks} chunks`).to.be.at.most(chunks * 4);
  });
});
