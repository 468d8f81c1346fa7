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
 * A model run holds a worker's event loop. The lock-renewal thread keeps the
 * worker's locks through it, up to WORKER_MAX_RUN_MS; past that the worker
 * counts as hung and other workers run its work again (README,
 * WORKER_MAX_RUN_MS). A run past half the bound is warned of, with what to
 * do, rather than leaving an operator to find jobs failed `worker_lost`
 * with no worker dead.
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

describe('workers: model runs longer than the lock, and than half of WORKER_MAX_RUN_MS', function () {
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
    expect(lines.map((l) => [l.runMs, l.maxRunMs])).to.deep.equal([[750, 1000], [800, 1000]]);
    expect(String(lines[0]!.msg)).to.include('set WORKER_MAX_RUN_MS above twice the longest run');
  });

  describe('on worker processes', () => {
    let repo: TempModelRepo;
    let p: TestPlatform;
    const workers: Spawned[] = [];
    before(async () => {
      repo = tempModelRepo({ cubic: { onnx: cubicModel(24), config: { max_batch_size: 1, max_delay_ms: 0 } } });
      p = await startPlatform({ models: repo.root, worker: false });
    });
    afterEach(() => {
      for (const w of workers.splice(0)) w.kill();
    });
    after(async () => {
      await p?.close();
      repo?.remove();
    });

    async function startWorkers(n: number, env: Record<string, string>): Promise<Spawned[]> {
      const started = Array.from({ length: n }, () => new Spawned('start:worker', { REDIS_URL: p.config.redisUrl, QUEUE_PREFIX: p.prefix, MODEL_REPOSITORY: repo.root, WORKER_METRICS_PORT: '0', ...env }));
      workers.push(...started);
      await Promise.all(started.map((w) => w.waitForLog('worker started', 60_000)));
      await p.gateway.catalog.refresh();
      return started;
    }

    const said = (w: Spawned, text: string) => w.lines.filter((l) => typeof l.msg === 'string' && l.msg.includes(text));

    // len 2560: a run of seconds on any machine (cubic in len), far past a 1 s lock.
    const longRun = { model: 'cubic', input: { x: new Array(2560).fill(0) } };

    it('keeps its locks through a run longer than WORKER_LOCK_MS: the other worker never takes the job back, and it succeeds once', async () => {
      const pair = await startWorkers(2, { WORKER_LOCK_MS: '1000' });
      const { job } = await postJob(p, longRun);
      const ended = await waitUntil(async () => {
        const j = (await (await p.api(`/v1/jobs/${job.id}`)).json()) as Job;
        return j.status === 'succeeded' || j.status === 'failed' ? j : null;
      }, 60_000, 'the job to end');
      expect(ended.status).to.equal('succeeded');
      expect(ended.metrics?.inference_ms, 'the run was longer than the lock').to.be.greaterThan(1000);
      for (const w of pair) {
        expect(said(w, 'job stalled'), 'no stalled check took the envelope back').to.deep.equal([]);
        expect(said(w, 'lost the lock'), 'no lock lost').to.deep.equal([]);
      }
    });

    it('past half of WORKER_MAX_RUN_MS warns; past all of it, says the worker stopped keeping its locks', async () => {
      const [worker] = await startWorkers(1, { WORKER_LOCK_MS: '1000', WORKER_MAX_RUN_MS: '1000' });
      await postJob(p, longRun);
      const warned = await waitUntil(() => said(worker!, 'past half of WORKER_MAX_RUN_MS')[0], 60_000, 'the warning');
      expect(warned.maxRunMs).to.equal(1000);
      expect(Number(warned.runMs)).to.be.greaterThan(1000);
      const hung = await waitUntil(() => said(worker!, 'blocked past WORKER_MAX_RUN_MS')[0], 10_000, 'the hang reported');
      expect(Number(hung.blockedMs)).to.be.greaterThan(1000);
    });
  });
});
