import { expect } from 'chai';
import { Redis } from 'ioredis';
import { bulkQueue } from '@infer/contract';
import { getBatch, readResults, submitBatch } from './helpers/batches.js';
import { int32DivModel } from './helpers/int-graphs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import type { Exit } from './helpers/spawned.js';
import { WorkerProcesses } from './helpers/worker-process.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A bulk worker holds two chunks: the one it runs and the next, fetched
 * ahead. When a row of the running chunk crashes the process (SIGFPE from
 * INT32_MIN / -1), BullMQ's stalled check counts a stall for both. A chunk
 * whose rows keep crashing its workers reaches the stall limit, and so did
 * the chunk fetched beside it each time: its rows ended `worker_lost`
 * although none of them ever ran. A chunk's run now marks that it began
 * (bulk-worker.ts, MARK_RUN_BEGAN), and only the stalls of its own runs
 * count: those of a chunk that never began were its neighbours', and
 * neither end it nor make it run its rows one at a time.
 *
 * Which chunk a new worker takes first after a stall depends on the order
 * in which BullMQ's stalled check put them back, so the state a good chunk
 * is left in after three such deaths is also set up directly, as the
 * stalled check writes it (`stc` 3, `defa`). The crashing workers are real
 * processes: a SIGFPE in this process would end mocha.
 */
describe('a bulk chunk fetched ahead beside a chunk that keeps crashing its workers', function () {
  this.timeout(180_000);

  let repo: TempModelRepo | undefined;
  let p: TestPlatform | undefined;
  let redis: Redis | undefined;
  const workers = new WorkerProcesses({ WORKER_LOCK_MS: '1000' });

  before(async () => {
    repo = tempModelRepo({ idiv: { onnx: int32DivModel(), config: { max_batch_size: 8, max_delay_ms: 20 } } });
    p = await startPlatform({ models: repo.root, worker: false, env: { WORKER_LOCK_MS: '1000' } });
    redis = new Redis(p.config.redisUrl);
  });
  after(async () => {
    await workers.stop();
    redis?.disconnect();
    await p?.close();
    repo?.remove();
  });

  const items = (rows: number[][]) => ({ json: { model: 'idiv', items: rows.map(([a, b]) => ({ input: { a: [a], b: [b] } })) } });

  /** Submit a batch of good rows and, with no worker running, leave its chunk as the stalled check leaves one that stalled three times. */
  async function chunkStalledThrice(fields: Record<string, string> = {}): Promise<{ id: string }> {
    const ref = bulkQueue(p!.prefix, 'idiv', '1');
    const batch = await submitBatch(p!, items([[20, 2], [22, 2]]));
    const jobId = await waitUntil(async () => (await redis!.lrange(`${ref.prefix}:${ref.name}:wait`, 0, -1))[0] ?? null, 10_000, 'the chunk to be queued');
    await redis!.hset(`${ref.prefix}:${ref.name}:${jobId}`, { stc: '3', defa: 'job stalled more than allowable limit', ...fields });
    return batch;
  }

  it('a chunk that stalled three times but never began a run runs, and its rows succeed', async () => {
    const batch = await chunkStalledThrice();
    await p!.startWorker();
    try {
      const ended = await waitUntil(async () => ((await getBatch(p!, batch.id)).status === 'completed' ? getBatch(p!, batch.id) : null), 20_000, 'the batch to end');
      expect(ended.request_counts).to.include({ total: 2, succeeded: 2, failed: 0 });
      expect((await readResults(p!, batch.id)).map((l) => l.output)).to.deep.equal([{ y: [10] }, { y: [11] }]);
    } finally {
      await p!.closeWorker();
    }
  });

  it('a chunk whose own runs stalled three times still ends worker_lost', async () => {
    // As MARK_RUN_BEGAN leaves it after two takes that found its run begun (`rb`, attempt 0; `ors` 2), and
    // the stalled check after the third run's death: this take finds it begun once more.
    const batch = await chunkStalledThrice({ rb: '0', ors: '2' });
    await p!.startWorker();
    try {
      const ended = await waitUntil(async () => ((await getBatch(p!, batch.id)).status === 'completed' ? getBatch(p!, batch.id) : null), 20_000, 'the batch to end');
      expect(ended.request_counts).to.include({ total: 2, succeeded: 0, failed: 2 });
      expect((await readResults(p!, batch.id)).map((l) => l.error?.code)).to.deep.equal(['worker_lost', 'worker_lost']);
    } finally {
      await p!.closeWorker();
    }
  });

  it('beside a chunk whose rows kill three workers: the good chunk\'s rows succeed, the crashing chunk alone pays', async () => {
    const ref = bulkQueue(p!.prefix, 'idiv', '1');
    const queued = async (n: number) => waitUntil(async () => ((await redis!.llen(`${ref.prefix}:${ref.name}:wait`)) >= n ? true : null), 10_000, `${n} chunks to be queued`);
    // Two crashing rows in a chunk of a few (a long run's rows are divided by vector code that does not trap):
    // the whole chunk's run, then each crashing row run alone, kill three workers; its third stall ends it.
    const crashing = await submitBatch(p!, items([[-2147483648, -1], [100, 2], [-2147483648, -1]]));
    await queued(1);
    const good = await submitBatch(p!, items([[10, 2], [12, 2], [14, 2]]));
    await queued(2);

    const deaths: Exit[] = [];
    const ended = async () => {
      const [a, b] = [await getBatch(p!, crashing.id), await getBatch(p!, good.id)];
      return a.status === 'completed' && b.status === 'completed' ? { a, b } : null;
    };
    let outcome: Awaited<ReturnType<typeof ended>> = null;
    for (let round = 0; round < 6 && !outcome; round++) {
      const { exit } = workers.start(p!);
      const seen = await waitUntil(async () => ((await ended()) ? { done: true } : exit() ? { died: exit()! } : null), 60_000, 'the batches to end or the worker to die');
      if (seen.died) deaths.push(seen.died);
      outcome = await ended();
    }
    expect(outcome, `the batches never completed; workers died: ${JSON.stringify(deaths)}`).to.not.equal(null);

    // Stalls per chunk, for the failure message: the good one is held beside the crashing one's runs when taken after it.
    const events = await redis!.xrange(`${ref.prefix}:${ref.name}:events`, '-', '+');
    const stalls = new Map<string, number>();
    for (const [, fields] of events) {
      const at = (name: string) => fields[fields.indexOf(name) + 1];
      if (at('event') === 'stalled') stalls.set(at('jobId')!, (stalls.get(at('jobId')!) ?? 0) + 1);
    }
    expect(deaths.length, `workers the crashing chunk killed (stalls per chunk: ${JSON.stringify([...stalls])})`).to.equal(3);

    expect(outcome!.b.request_counts).to.include({ total: 3, succeeded: 3, failed: 0 });
    const lines = await readResults(p!, good.id);
    expect(lines.map((l) => ({ status: l.status, output: l.output }))).to.deep.equal([5, 6, 7].map((y) => ({ status: 'succeeded', output: { y: [y] } })));
    // The crashing chunk's rows end with it, worker_lost (two crashing rows in one chunk: the known limit).
    expect(outcome!.a.request_counts).to.include({ total: 3, failed: 3 });
  });
});
