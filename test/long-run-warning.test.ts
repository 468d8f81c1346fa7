import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { createLogger } from '@infer/logger';
import { Writable } from 'node:stream';
import { LongRunWarning } from '../apps/worker/src/consumer/long-run-warning.js';
import { postJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { cubicModel } from './helpers/slow-models.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A model run holds a worker's event loop, so no lock is renewed during it:
 * a run past half of WORKER_LOCK_MS can let the locks lapse, and other
 * workers run the work again (README, WORKER_LOCK_MS). The worker says so in
 * its log, with what to do, rather than leaving an operator to find jobs
 * failed `worker_lost` with no worker dead.
 */
function capture(): { logger: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger({ level: 'warn', name: 'worker', destination }), lines };
}

describe('workers: a model run that outlasts half of WORKER_LOCK_MS', function () {
  this.timeout(60_000);

  it('is warned of, naming the run and the lock, at most once a minute', () => {
    const { logger, lines } = capture();
    let now = 0;
    const warning = new LongRunWarning(1000, logger, () => now);
    warning.observe([{ ms: 400 }, { ms: 500 }]);
    expect(lines, 'half the lock is not past it').to.deep.equal([]);
    warning.observe([{ ms: 100 }, { ms: 750 }]);
    now += 59_000;
    warning.observe([{ ms: 900 }]);
    now += 1_000;
    warning.observe([{ ms: 800 }]);
    expect(lines.map((l) => [l.runMs, l.lockMs])).to.deep.equal([[750, 1000], [800, 1000]]);
    expect(String(lines[0]!.msg)).to.include('set WORKER_LOCK_MS above twice the longest run');
  });

  describe('on a worker process', () => {
    let repo: TempModelRepo;
    let p: TestPlatform;
    let worker: Spawned | undefined;
    before(async () => {
      repo = tempModelRepo({ cubic: { onnx: cubicModel(24), config: { max_batch_size: 1, max_delay_ms: 0 } } });
      p = await startPlatform({ models: repo.root, worker: false });
    });
    after(async () => {
      worker?.kill();
      await p?.close();
      repo?.remove();
    });

    it('logs it at warn for a job whose run took longer, and the job still succeeds on its one worker', async () => {
      worker = new Spawned('start:worker', { REDIS_URL: p.config.redisUrl, QUEUE_PREFIX: p.prefix, MODEL_REPOSITORY: repo.root, WORKER_METRICS_PORT: '0', WORKER_LOCK_MS: '1000' });
      await worker.waitForLog('worker started', 60_000);
      await p.gateway.catalog.refresh();
      const { job } = await postJob(p, { model: 'cubic', input: { x: new Array(2048).fill(0) } });
      const ended = await waitUntil(async () => {
        const j = (await (await p.api(`/v1/jobs/${job.id}`)).json()) as Job;
        return j.status === 'succeeded' || j.status === 'failed' ? j : null;
      }, 40_000, 'the job to end');
      expect(ended.status).to.equal('succeeded');
      const warned = await waitUntil(() => worker!.lines.find((l) => typeof l.msg === 'string' && l.msg.includes('past half of WORKER_LOCK_MS')), 10_000, 'the warning');
      expect(warned.lockMs).to.equal(1000);
      expect(Number(warned.runMs)).to.be.greaterThan(500);
    });
  });
});
