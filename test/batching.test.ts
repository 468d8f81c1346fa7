import path from 'node:path';
import { expect } from 'chai';
import type { Job, ModelInfo } from '@infer/contract';
import { runJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { seededFloats } from './helpers/ort-reference.js';
import { SHIPPED_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';

const MLP = path.join(SHIPPED_MODELS, 'mlp');

/** `clients` concurrent POSTs with Prefer: wait, `rounds` times; every job must succeed. */
async function burst(p: TestPlatform, model: string, clients: number, rounds: number): Promise<Job[]> {
  const jobs: Job[] = [];
  for (let r = 0; r < rounds; r++) {
    const round = await Promise.all(
      Array.from({ length: clients }, (_, i) => runJob(p, { model, input: { features: Array.from(seededFloats(64, r * clients + i + 1)) } })),
    );
    jobs.push(...round);
  }
  for (const job of jobs) expect(job.status, job.error?.message).to.equal('succeeded');
  return jobs;
}

const batchSizes = (jobs: readonly Job[]): number[] => jobs.map((j) => j.metrics!.batch_size);

describe('batching: concurrent jobs share runs', () => {
  let repo: TempModelRepo;
  let p: TestPlatform;
  before(async () => {
    repo = tempModelRepo({
      mlp: { from: MLP },
      // Small batches, and a long enough window that 64 clients fill them.
      mlp4: { from: MLP, config: { max_batch_size: 4, max_delay_ms: 50 } },
      // A window far longer than any test waits: only "nothing more is waiting" can flush a lone job.
      'mlp-slow': { from: MLP, config: { max_batch_size: 64, max_delay_ms: 2000 } },
    });
    p = await startPlatform({ models: repo.root });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
  });

  it('64 concurrent clients on mlp: some batches hold more than one job, none more than max_batch_size 64', async () => {
    const info = (await (await p.api('/v1/models/mlp')).json()) as ModelInfo;
    expect(info.max_batch_size).to.equal(64);
    const sizes = batchSizes(await burst(p, 'mlp', 64, 3));
    expect(Math.max(...sizes), `batch sizes ${sizes.join(',')}`).to.be.greaterThan(1);
    expect(Math.max(...sizes)).to.be.at.most(64);
    expect(Math.min(...sizes)).to.be.at.least(1);
  });

  it('with max_batch_size 4 in config.json: batches fill to exactly 4 and never beyond', async () => {
    const info = (await (await p.api('/v1/models/mlp4')).json()) as ModelInfo;
    expect(info).to.include({ max_batch_size: 4, max_delay_ms: 50 });
    const sizes = batchSizes(await burst(p, 'mlp4', 64, 2));
    expect(Math.max(...sizes), `batch sizes ${sizes.join(',')}`).to.equal(4);
    // Jobs that say they ran in a batch of 4 come in fours: the metric is the real run size.
    expect(sizes.filter((s) => s === 4).length % 4).to.equal(0);
  });

  it('a lone job is not held for max_delay_ms: it runs as soon as nothing more is waiting', async () => {
    const info = (await (await p.api('/v1/models/mlp-slow')).json()) as ModelInfo;
    expect(info.max_delay_ms).to.equal(2000);
    // Warm the path first (sessions, connections), so the timing below is about batching.
    await runJob(p, { model: 'mlp-slow', input: { features: new Array(64).fill(0) } });
    for (let i = 0; i < 2; i++) {
      const started = performance.now();
      const job = await runJob(p, { model: 'mlp-slow', input: { features: new Array(64).fill(i) } }, 10);
      const elapsed = performance.now() - started;
      expect(job.metrics!.batch_size).to.equal(1);
      expect(elapsed, `a lone job took ${Math.round(elapsed)} ms with max_delay_ms 2000`).to.be.below(1000);
    }
  });
});
