import path from 'node:path';
import { expect } from 'chai';
import { EnvelopeQueue } from '@infer/job-store';
import { EMBED_ROWS } from '../scripts/build-models.js';
import { pollJob, postJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { FIXTURE_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

const EMBED = { model: 'embed-sum', version: '1' };
const good = (seed: number): number[] => Array.from({ length: 4 }, (_, k) => (seed * 7 + k * 3) % EMBED_ROWS);

function value(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const l: Record<string, string> = {};
    for (const x of (m[2] ?? '').matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) l[x[1]!] = x[2]!;
    if (Object.entries(labels).every(([k, v]) => l[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

describe('worker latency histograms observe each job once, when its result is written', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  const original = EnvelopeQueue.prototype.finish;
  before(() => {
    repo = tempModelRepo({ 'embed-sum': { from: path.join(FIXTURE_MODELS, 'embed-sum') } });
  });
  afterEach(async () => {
    EnvelopeQueue.prototype.finish = original;
    await p?.close();
  });
  after(() => repo?.remove());

  const worker = async () => (await fetch(`http://127.0.0.1:${p.worker!.metricsPort}/metrics`)).text();

  it('a job canceled by its client while it runs: its result is never written, so no submit-to-end latency is observed', async () => {
    p = await startPlatform({ models: repo.root, worker: false });
    const { job } = await postJob(p, { model: 'embed-sum', input: { ids: good(1) } });
    let canceled = 0;
    // The worker's end of the batch: the client cancels the running job just before it (a real race, made certain).
    EnvelopeQueue.prototype.finish = async function (this: EnvelopeQueue, ...args: Parameters<EnvelopeQueue['finish']>) {
      EnvelopeQueue.prototype.finish = original;
      const res = await p.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
      if (res.status === 200) canceled++;
      return original.apply(this, args);
    };
    await p.startWorker();
    const ended = await pollJob(p, job.id, 10_000);
    expect(ended.status).to.equal('canceled');
    expect(canceled).to.equal(1);
    const gw = await (await fetch(`${p.baseUrl}/metrics`)).text();
    expect(value(gw, 'infer_jobs_ended_total', { ...EMBED, status: 'canceled' })).to.equal(1);
    const text = await waitUntil(async () => {
      const t = await worker();
      return value(t, 'infer_batch_size_count', EMBED) >= 1 ? t : null;
    }, 5000, 'the run to be counted');
    const endedHere = ['succeeded', 'failed', 'canceled'].reduce((a, s) => a + value(text, 'infer_jobs_ended_total', { ...EMBED, status: s }), 0);
    expect(endedHere, 'the worker ended no job (the client did)').to.equal(0);
    expect(value(text, 'infer_inference_request_duration_seconds_count', EMBED), 'submit-to-end latencies: none was written here').to.equal(0);
  });

  it('a batch whose end failed (Redis blip) and ran again: each job ends once and its latency is observed once', async () => {
    p = await startPlatform({ models: repo.root, worker: false, env: { WORKER_LOCK_MS: '1000' } });
    const jobs = await Promise.all(Array.from({ length: 3 }, (_, i) => postJob(p, { model: 'embed-sum', input: { ids: good(i) } })));
    let failures = 0;
    // The first batch's end fails every try (4: the first and 3 retries), as when Redis is away; then Redis is back.
    EnvelopeQueue.prototype.finish = async function (this: EnvelopeQueue, ...args: Parameters<EnvelopeQueue['finish']>) {
      if (failures < 4) {
        failures++;
        throw new Error('Connection is closed.');
      }
      return original.apply(this, args);
    };
    await p.startWorker();
    const ended = await Promise.all(jobs.map((s) => pollJob(p, s.job.id, 20_000)));
    expect(ended.map((j) => j.status)).to.deep.equal(['succeeded', 'succeeded', 'succeeded']);
    expect(failures).to.equal(4);
    const text = await waitUntil(async () => {
      const t = await worker();
      return value(t, 'infer_jobs_ended_total', { ...EMBED, status: 'succeeded' }) >= 3 ? t : null;
    }, 5000, 'the ends to be counted');
    expect(value(text, 'infer_jobs_ended_total', { ...EMBED, status: 'succeeded' }), 'jobs ended').to.equal(3);
    expect(value(text, 'infer_inference_request_duration_seconds_count', EMBED), 'submit-to-end latencies observed').to.equal(3);
  });
});
