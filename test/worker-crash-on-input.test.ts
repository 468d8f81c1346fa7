import { expect } from 'chai';
import { isEnded, type Job } from '@infer/contract';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { getJob, postJob } from './helpers/jobs.js';
import type { Exit } from './helpers/spawned.js';
import { WorkerProcesses } from './helpers/worker-process.js';
import { waitUntil } from './helpers/wait.js';
import { getBatch, readResults, submitBatch } from './helpers/batches.js';
import { int32DivModel } from './helpers/int-graphs.js';

/**
 * Inputs the gateway takes (every value an INT32) that make ONNX Runtime's
 * integer Div trap instead of throw: INT32_MIN / -1 overflows, and x86's idiv
 * raises SIGFPE, which kills the whole worker process (ONNX Runtime checks a
 * zero divisor, not this). JavaScript cannot catch it; the worker contains
 * it: an envelope taken again after its worker died runs its jobs one at a
 * time, each noted on the envelope before it runs, so the next take fails
 * the job whose input killed a worker (`inference_failed`) and runs the
 * others. A crashing input costs two workers (an orchestrator restarts them)
 * and fails alone; the jobs batched with it succeed, not `worker_lost`.
 *
 * The workers are real processes (`npm run start:worker`): a SIGFPE in this
 * process would end mocha.
 */
describe('a valid INT32 input that makes ONNX Runtime trap (INT32_MIN / -1)', function () {
  this.timeout(120_000);

  let repo: TempModelRepo | undefined;
  let p: TestPlatform | undefined;
  const workers = new WorkerProcesses({ WORKER_LOCK_MS: '1000' });

  beforeEach(async () => {
    repo = tempModelRepo({ idiv: { onnx: int32DivModel(), config: { max_batch_size: 8, max_delay_ms: 20 } } });
    // No worker in this process: the jobs queue until a worker process takes them, together.
    p = await startPlatform({ models: repo.root, worker: false, env: { WORKER_LOCK_MS: '1000' } });
  });

  afterEach(async () => {
    await workers.stop();
    await p?.close();
    repo?.remove();
  });

  const spawnWorker = () => workers.start(p!);

  const div = (a: number, b: number) => ({ model: 'idiv', input: { a: [a], b: [b] } });

  /** Start workers one after another, as an orchestrator restarts them, until `ended` holds (at most five); the deaths seen. */
  async function restartingWorkers<T>(ended: () => Promise<T | null>): Promise<{ outcome: T | undefined; deaths: Exit[] }> {
    const deaths: Exit[] = [];
    for (let round = 0; round < 5; round++) {
      const { exit } = spawnWorker();
      const seen = await waitUntil(
        async () => {
          const done = await ended();
          if (done) return { done };
          return exit() ? { died: exit()! } : null;
        },
        60_000,
        'the jobs to end or the worker to die',
      );
      if (seen.died) deaths.push(seen.died);
      else return { outcome: seen.done, deaths };
    }
    return { outcome: undefined, deaths };
  }

  it('the gateway takes it (every value is an INT32); it fails alone, inference_failed, once, for two workers at most, and the next job runs', async () => {
    const { res, job } = await postJob(p!, div(-2147483648, -1));
    expect(res.status).to.equal(202);
    const { outcome, deaths } = await restartingWorkers(async () => {
      const j = await getJob(p!, job.id);
      return isEnded(j.status) ? j : null;
    });
    expect(outcome, `the job never ended; workers died: ${JSON.stringify(deaths)}`).to.not.equal(undefined);
    expect(deaths.length, 'workers the input killed').to.be.within(1, 2);
    for (const d of deaths) expect(d.signal).to.equal('SIGFPE');
    expect(outcome!.status).to.equal('failed');
    expect(outcome!.error?.code).to.equal('inference_failed');
    expect(outcome!.error?.message).to.match(/died or hung/);
    // The worker now running serves the next job.
    const next = (await postJob(p!, div(9, 3), { wait: 20 })).job;
    expect(next.status).to.equal('succeeded');
    expect(next.output).to.deep.equal({ y: [3] });
  });

  it('a good job taken in the same micro-batch still succeeds with its own output (not worker_lost), however many workers the poison costs', async () => {
    const good = (await postJob(p!, div(7, 2))).job;
    const bad = (await postJob(p!, div(-2147483648, -1))).job;
    const { outcome: final, deaths } = await restartingWorkers(async () => {
      const g = await getJob(p!, good.id);
      const b = await getJob(p!, bad.id);
      return isEnded(g.status) && isEnded(b.status) ? { good: g, bad: b } : null;
    });
    expect(final, `the jobs never ended; workers died: ${JSON.stringify(deaths)}`).to.not.equal(undefined);
    expect({ status: final!.good.status, error: final!.good.error, output: final!.good.output }, `worker deaths: ${deaths.map((d) => d.signal).join(', ')}`).to.deep.equal({
      status: 'succeeded',
      error: null,
      output: { y: [3] },
    });
    expect(final!.bad.status).to.equal('failed');
    expect(final!.bad.error?.code).to.equal('inference_failed');
    expect(deaths.length, 'workers the input killed').to.be.within(1, 2);
  });
  it("a batch: the row that crashes fails alone, inference_failed; the chunk's other rows succeed, each with its own quotient", async () => {
    // A few rows: ONNX Runtime divides a long run's rows with vector code that does not trap.
    const rows = Array.from({ length: 3 }, (_, i) => (i === 1 ? [-2147483648, -1] : [100 + i, 2]));
    const batch = await submitBatch(p!, { json: { model: 'idiv', items: rows.map(([a, b]) => ({ input: { a: [a], b: [b] } })) } });
    const { outcome, deaths } = await restartingWorkers(async () => {
      const b = await getBatch(p!, batch.id);
      return b.status === 'completed' ? b : null;
    });
    expect(outcome, `the batch never completed; workers died: ${JSON.stringify(deaths)}`).to.not.equal(undefined);
    const lines = await readResults(p!, batch.id);
    expect(deaths.length, 'workers the row killed').to.be.within(1, 2);
    expect(outcome!.request_counts).to.include({ total: 3, succeeded: 2, failed: 1 });
    expect(lines.map((l) => l.index)).to.deep.equal(rows.map((_, i) => i));
    for (const [i, line] of lines.entries()) {
      if (i === 1) {
        expect(line.status).to.equal('failed');
        expect(line.error?.code).to.equal('inference_failed');
        expect(line.error?.message).to.match(/died or hung/);
      } else {
        expect({ status: line.status, output: line.output }).to.deep.equal({ status: 'succeeded', output: { y: [Math.trunc((100 + i) / 2)] } });
      }
    }
  });
});
