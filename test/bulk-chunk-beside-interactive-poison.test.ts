import { expect } from 'chai';
import type { Batch, BatchResultLine, Job } from '@infer/contract';
import { int32DivModel } from './helpers/int-graphs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { cubicModel } from './helpers/slow-models.js';
import type { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';
import { WorkerProcesses } from './helpers/worker-process.js';

/**
 * docs/api.md: a crashing input "costs two worker processes ... and fails
 * alone. A batch's items are kept apart the same way. Only the stalls of a
 * job's own runs count". A good batch (a chunk of slow but harmless rows)
 * is running on the one worker when two interactive poison jobs
 * (INT32_MIN / -1, another model) arrive: each costs two workers and fails
 * alone, and the chunk, whose rows never crashed anything, runs to the end.
 * A chunk's run note (`rb`) is cleared before another's run in the process
 * starts (ChunkRunMark); it used to stay set for the whole take, so every
 * death between its slices was counted as its own, and its rows all ended
 * `worker_lost`.
 */
describe('bulk: interactive poison jobs while a good batch chunk is mid-run', function () {
  this.timeout(240_000);
  let repo: TempModelRepo | undefined;
  let redis: OwnRedis | undefined;
  let p: TestPlatform | undefined;
  const workers = new WorkerProcesses({ WORKER_LOCK_MS: '1000' });
  const live = new Set<Spawned>();
  const deaths: string[] = [];
  let orchestrating = true;
  let orchestrator: Promise<void> | undefined;

  before(async () => {
    repo = tempModelRepo({
      idiv: { onnx: int32DivModel(), config: { max_batch_size: 8, max_delay_ms: 5 } },
      cubic: { onnx: cubicModel(8), config: { max_batch_size: 2, max_delay_ms: 1 } },
    });
    redis = await OwnRedis.start();
    p = await startPlatform({ models: repo.root, worker: false, redisUrl: redis.url, env: { WORKER_LOCK_MS: '1000' } });
  });

  after(async () => {
    orchestrating = false;
    await orchestrator?.catch(() => undefined);
    for (const w of live) w.kill();
    await workers.stop();
    await p?.close().catch(() => undefined);
    await redis?.stop();
    repo?.remove();
  });

  it('the batch rows succeed; only the poison jobs fail', async () => {
    // The orchestrator: one worker process, restarted whenever it exits.
    orchestrator = (async () => {
      while (orchestrating) {
        if (live.size === 0 && deaths.length < 20) {
          const { worker } = workers.start(p!);
          live.add(worker);
          void worker.exited.then((e) => {
            live.delete(worker);
            deaths.push(String(e.signal ?? e.code));
          });
        }
        await waitUntil(() => !orchestrating || live.size === 0, 24 * 3600_000, 'the worker to exit');
      }
    })();
    await waitUntil(async () => {
      await p!.gateway.catalog.refresh();
      const m = (await (await p!.api('/v1/models/cubic')).json()) as { versions_detail?: Array<{ workers_ready: number }> };
      return (m.versions_detail?.[0]?.workers_ready ?? 0) > 0;
    }, 60_000, 'the worker to be ready');

    const ROWS = 40;
    const res = await p!.api('/v1/batches', { method: 'POST', body: JSON.stringify({ model: 'cubic', items: Array.from({ length: ROWS }, (_, i) => ({ custom_id: `r${i}`, input: { x: new Array(384).fill(0) } })) }) });
    expect(res.status).to.equal(202);
    const batch = (await res.json()) as Batch;
    await waitUntil(async () => ((await (await p!.api(`/v1/batches/${batch.id}`)).json()) as Batch).status === 'running', 30_000, 'the batch to run');

    // Two poison jobs, one after the other, each while the chunk is still running.
    const poison: Job[] = [];
    for (let k = 0; k < 2; k++) {
      const r = await p!.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'idiv', input: { a: [-2147483648], b: [-1] } }) });
      const job = (await r.json()) as Job;
      poison.push(job);
      await waitUntil(async () => {
        const j = (await (await p!.api(`/v1/jobs/${job.id}`)).json()) as Job;
        return ['succeeded', 'failed', 'canceled'].includes(j.status) ? j : null;
      }, 60_000, `poison job ${k} to end`);
    }
    const ended = await waitUntil(async () => {
      const b = (await (await p!.api(`/v1/batches/${batch.id}`)).json()) as Batch;
      return b.status === 'completed' || b.status === 'canceled' ? b : null;
    }, 120_000, 'the batch to end');
    const lines = (await (await p!.api(`/v1/batches/${batch.id}/results`)).text()).split('\n').filter(Boolean).map((l) => JSON.parse(l) as BatchResultLine);
    const poisonFinal = await Promise.all(poison.map(async (j) => (await (await p!.api(`/v1/jobs/${j.id}`)).json()) as Job));
    const codes = lines.reduce<Record<string, number>>((a, l) => ((a[l.status + (l.error ? '/' + l.error.code : '')] = (a[l.status + (l.error ? '/' + l.error.code : '')] ?? 0) + 1), a), {});
    console.log(`      worker deaths: ${deaths.join(',')}; poison jobs: ${poisonFinal.map((j) => `${j.status}/${j.error?.code}`).join(', ')}; batch ${ended.status} ${JSON.stringify(ended.request_counts)}; rows ${JSON.stringify(codes)}`);
    for (const j of poisonFinal) expect(j.error?.code).to.equal('inference_failed');
    expect(codes, 'the batch rows, which never crashed a worker').to.deep.equal({ succeeded: ROWS });
  });
});
