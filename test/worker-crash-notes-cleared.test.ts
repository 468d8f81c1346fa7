import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, isEnded, newJobId, queueTag, type EnvelopeJob, type Job } from '@infer/contract';
import { EnvelopeQueue } from '@infer/job-store';
import { decodeInput } from '@infer/tensors';
import { EnvelopeWriter } from '../apps/gateway/src/jobs/envelope-writer.js';
import { getJob } from './helpers/jobs.js';
import { int32DivModel } from './helpers/int-graphs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import type { Exit } from './helpers/spawned.js';
import { WorkerProcesses } from './helpers/worker-process.js';
import { waitUntil } from './helpers/wait.js';

/**
 * The crash containment (InteractiveWorker.runAlone): the `run` note names
 * the job a worker is running alone only while it runs, and is cleared once
 * its run is over. Two envelopes taken again after a stall run alone at once
 * in one process, their runs interleaved through runModel's turns; when the
 * poison job of one kills the worker, the other envelope's note must not
 * still name a good job whose run had ended fine (the next take would fail
 * it `inference_failed` without running it).
 *
 * X = [X0 good, Q poison] and Y = [Y0, Y1, Y2] good, two envelopes. A worker
 * takes both and dies (any reason: here a take by this process that is never
 * run, its lock let lapse). The next worker takes both again and runs them
 * alone, interleaved: X0, Y0, Q (order X, Y) or Y0, X0, Y1, Q (order Y, X):
 * Q's SIGFPE leaves Y's note on Y0 or Y1, both of which ran fine. Only Q
 * should fail.
 */
describe('crash notes: a good job of another envelope running alone in the same process is not blamed', function () {
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

  const spawnWorker = () => workers.start(p!);

  it('only the poison job fails; every good job of both envelopes succeeds with its own quotient', async () => {
    const model = p!.gateway.models.resolve('idiv', '1');
    const writer = new EnvelopeWriter({ redis: redis!, prefix: p!.prefix, resultTtlMs: 600_000, maxQueueDepth: 1_000_000, gatewayChannel: p!.gateway.waiters.channel });
    /** Jobs added in one turn travel as one envelope. */
    const envelope = (pairs: Array<[number, number]>) =>
      pairs.map(([a, b]) => {
        const job: EnvelopeJob = { id: newJobId(queueTag('idiv', '1')), tenant: 'tenant-a', created_at: Date.now() };
        return { id: job.id, a, b, written: writer.add(model, job, [decodeInput([a], model.inputs[0]!), decodeInput([b], model.inputs[1]!)]) };
      });
    const x = envelope([
      [7, 2],
      [-2147483648, -1],
    ]);
    await Promise.all(x.map((j) => j.written));
    const y = envelope([
      [9, 3],
      [100, 7],
      [50, -5],
    ]);
    await Promise.all(y.map((j) => j.written));
    const k = interactiveKeys(p!.prefix, 'idiv', '1');
    const index = await redis!.hgetall(k.index);
    expect(new Set(x.map((j) => index[j.id])).size, 'X is one envelope').to.equal(1);
    expect(new Set(y.map((j) => index[j.id])).size, 'Y is one envelope').to.equal(1);
    expect(index[x[0]!.id]).to.not.equal(index[y[0]!.id]);

    // A worker takes both and dies before running them (its lock lapses after 1 s).
    const dead = new EnvelopeQueue(redis!, { prefix: p!.prefix, model: 'idiv', version: '1', resultTtlMs: 600_000 });
    const taken = await dead.fetch('dead-worker', 1000, 64, 64);
    expect(taken === 'paused' ? 0 : taken.envelopes.length).to.equal(2);

    const all = [...x, ...y];
    const deaths: Exit[] = [];
    let final: Job[] | undefined;
    for (let round = 0; round < 4 && !final; round++) {
      const { exit } = spawnWorker();
      const seen = await waitUntil(
        async () => {
          const jobs = await Promise.all(all.map((j) => getJob(p!, j.id)));
          if (jobs.every((j) => isEnded(j.status))) return { jobs };
          const e = exit();
          return e ? { died: e } : null;
        },
        60_000,
        'the jobs to end or the worker to die',
      );
      if (seen.died) deaths.push(seen.died);
      else final = seen.jobs;
    }
    expect(final, `the jobs never ended; deaths: ${JSON.stringify(deaths)}`).to.not.equal(undefined);
    const outcome = final!.map((j, i) => ({ a: all[i]!.a, b: all[i]!.b, status: j.status, code: j.error?.code ?? null, y: (j.output as { y?: number[] } | null)?.y ?? null }));
    const expected = all.map(({ a, b }) =>
      a === -2147483648 ? { a, b, status: 'failed', code: 'inference_failed', y: null } : { a, b, status: 'succeeded', code: null, y: [Math.trunc(a / b)] },
    );
    expect(outcome, `worker deaths: ${deaths.map((d) => d.signal).join(', ')}`).to.deep.equal(expected);
  });
});
