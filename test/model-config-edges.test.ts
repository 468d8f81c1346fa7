import path from 'node:path';
import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { startPlatform, REPO_ROOT, type TestPlatform } from './helpers/platform.js';
import { mlpFeatures } from './helpers/batches.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';

/**
 * Each model's config.json at its edges (README, per-model config table):
 * max_batch_size 1–4096, 0 (not batched); max_delay_ms 0–10000, "an empty
 * queue flushes at once"; unknown keys.
 */
const SERVED_MLP = path.join(REPO_ROOT, 'test', 'fixtures', 'served', 'mlp');

interface ModelView {
  name: string;
  max_batch_size: number;
  max_delay_ms: number;
  inputs: Array<{ name: string; shape: number[] }>;
  versions_detail: Array<{ version: string; state: string; error?: string }>;
}

describe('config: model config.json edges', function () {
  this.timeout(120_000);
  let repo: TempModelRepo;
  let p: TestPlatform;

  before(async () => {
    repo = tempModelRepo({
      'mlp-one': { from: SERVED_MLP, config: { max_batch_size: 1, max_delay_ms: 10_000 } },
      'mlp-wide': { from: SERVED_MLP, config: { max_batch_size: 4096, max_delay_ms: 10_000 } },
      'mlp-zero': { from: SERVED_MLP, config: { max_batch_size: 0, max_delay_ms: 0 } },
    });
    p = await startPlatform({ models: repo.root });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
  });

  async function model(name: string): Promise<ModelView> {
    const res = await p.api(`/v1/models/${name}`);
    expect(res.status, name).to.equal(200);
    return (await res.json()) as ModelView;
  }

  it('GET /v1/models shows each config as written (1 and 10000; 4096; 0 and 0)', async () => {
    const [one, wide, zero] = await Promise.all([model('mlp-one'), model('mlp-wide'), model('mlp-zero')]);
    expect([one, wide, zero].map((m) => [m.max_batch_size, m.max_delay_ms])).to.deep.equal([
      [1, 10_000],
      [4096, 10_000],
      [0, 0],
    ]);
  });

  it('max_delay_ms 10000: a lone job on an empty queue runs at once, not 10 s later', async () => {
    for (const name of ['mlp-wide', 'mlp-one']) {
      const started = Date.now();
      const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: name, input: { features: mlpFeatures(3) } }), headers: { prefer: 'wait=30' } });
      const job = (await res.json()) as Job;
      expect(res.status, `${name}: ${JSON.stringify(job)}`).to.equal(200);
      expect(job.status).to.equal('succeeded');
      expect(Date.now() - started, `${name}: ms to answer a lone job`).to.be.below(5_000);
    }
  });

  it('max_delay_ms 10000, max_batch_size 4096: jobs submitted together all answer at once once the queue is empty', async () => {
    const started = Date.now();
    const jobs = await Promise.all(
      [0, 1, 2, 3, 4].map(async (i) => {
        const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp-wide', input: { features: mlpFeatures(i) } }), headers: { prefer: 'wait=30' } });
        return (await res.json()) as Job;
      }),
    );
    expect(jobs.map((j) => j.status)).to.deep.equal(jobs.map(() => 'succeeded'));
    expect(Date.now() - started).to.be.below(5_000);
  });

  it('max_batch_size 1: concurrent jobs each run alone', async () => {
    const jobs = await Promise.all(
      [0, 1, 2, 3].map(async (i) => {
        const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp-one', input: { features: mlpFeatures(i) } }), headers: { prefer: 'wait=30' } });
        return (await res.json()) as Job;
      }),
    );
    expect(jobs.map((j) => [j.status, j.metrics?.batch_size])).to.deep.equal(jobs.map(() => ['succeeded', 1]));
  });

  it('max_batch_size 0: a model that would be batched takes full tensors, one job at a time', async () => {
    const m = await model('mlp-zero');
    const features = m.inputs.find((i) => i.name === 'features')!;
    expect(features.shape.length, JSON.stringify(features)).to.equal(2);
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp-zero', input: { features: [mlpFeatures(1), mlpFeatures(2)] } }), headers: { prefer: 'wait=30' } });
    const job = (await res.json()) as Job;
    expect(res.status, JSON.stringify(job)).to.equal(200);
    expect(job.status).to.equal('succeeded');
    expect((job.output as { probabilities: number[][] }).probabilities).to.have.length(2);
  });
});
