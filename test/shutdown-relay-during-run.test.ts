import { expect } from 'chai';
import { Redis } from 'ioredis';
import { bulkQueue } from '@infer/contract';
import { getBatch, submitBatch, toNdjson } from './helpers/batches.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { cubicModel } from './helpers/slow-models.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';

/**
 * README "Stopping a process": another SIGTERM or SIGINT less than SHUTDOWN_FORCE_GRACE_MS (2 s) after the
 * first is the same request. A worker that sees the first signal between two model runs goes on with the
 * chunk in hand, so its next run starts at once and holds the event loop; the relay, sent milliseconds
 * after the first, is handled only when that run ends, seconds later. It is judged by the earliest it may
 * have arrived (the run's start), so it is a duplicate: the chunk is finished and the worker exits 0.
 */
describe('shutdown: a duplicate signal that arrives during a long run of the graceful shutdown', function () {
  this.timeout(120_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let redis: Redis;
  let worker: Spawned | undefined;

  before(async () => {
    // One row a slice (max_batch_size 1); len 2304 makes each slice's run a few seconds, past the 2 s grace.
    repo = tempModelRepo({ cubic: { onnx: cubicModel(24), config: { max_batch_size: 1, max_delay_ms: 0 } } });
    p = await startPlatform({ models: repo.root, worker: false });
    redis = new Redis(p.config.redisUrl);
  });
  after(async () => {
    worker?.kill();
    redis?.disconnect();
    await p?.close();
    repo?.remove();
  });

  it('a relay arriving milliseconds after the first signal is a duplicate: the chunk in hand finishes and the worker exits 0', async () => {
    worker = new Spawned('start:worker', { REDIS_URL: p.config.redisUrl, QUEUE_PREFIX: p.prefix, MODEL_REPOSITORY: repo.root, WORKER_METRICS_PORT: '0' });
    await worker.waitForLog('worker started', 60_000);
    await p.gateway.catalog.refresh();
    // Two rows: the signal is handled before one run or after it, and one more run follows at once. No more:
    // on a slow machine a run takes nine seconds, and what remains of the chunk must end within the 30 s deadline.
    const rows = Array.from({ length: 2 }, (_, i) => ({ custom_id: `r${i}`, input: { x: new Array(2304).fill(0) } }));
    const batch = await submitBatch(p, { ndjson: toNdjson(rows), query: 'model=cubic' });
    const q = bulkQueue(p.prefix, 'cubic', '1');
    await waitUntil(async () => (await redis.llen(`${q.prefix}:${q.name}:active`)) > 0 && (await getBatch(p, batch.id)).status === 'running', 30_000, 'the chunk to be running');

    // The request to stop, to the group...
    worker.signalGroup('SIGTERM');
    await worker.waitForLog('shutting down', 20_000);
    const seenAt = performance.now();
    // The chunk in hand goes on: its next slice's run holds the worker's event loop. Its /metrics then answers
    // from its probe thread only after waiting half a second for the main thread (a scrape it could not get).
    const port = Number(worker.logged('worker started')[0]!.metricsPort);
    const held = async () => {
      const asked = performance.now();
      await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
      return performance.now() - asked >= 400;
    };
    await waitUntil(held, 1500, 'the next run to hold the event loop');
    // ...and its relay, as a wrapper in the group (npm start's scripts/start.ts) passes it on, well within the grace.
    worker.signalGroup('SIGTERM');
    const sentAfterMs = performance.now() - seenAt;
    const exit = await worker.exit(45_000);
    const forced = worker.logged('signalled again after the grace period');
    expect(sentAfterMs, 'the relay was sent well within the grace').to.be.below(1500);
    expect({ code: exit.code, forced: forced.map((l) => l.sinceFirstMs) }, worker.tail()).to.deep.equal({ code: 0, forced: [] });
    // The chunk in hand was finished: the batch completed, every row once.
    const ended = await getBatch(p, batch.id);
    expect(ended.request_counts).to.include({ succeeded: 2, failed: 0 });
  });
});
