import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { EMBED_ROWS } from '../scripts/build-models.js';
import { pollJob, postJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { FIXTURE_MODELS, startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { elapse, waitUntil } from './helpers/wait.js';
import { parse, value, type Sample } from './helpers/prometheus.js';


const EMBED = { model: 'embed-sum', version: '1' };
const FAILS = { model: 'always-fails', version: '1' };
const good = (seed: number): number[] => Array.from({ length: 4 }, (_, k) => (seed * 7 + k * 3) % EMBED_ROWS);
const poison = (seed: number): number[] => [seed % EMBED_ROWS, EMBED_ROWS + (seed % 5), 1, 2];

describe('metrics match a known mix of jobs', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let redis: Redis;
  before(async () => {
    repo = tempModelRepo({
      'embed-sum': { from: path.join(FIXTURE_MODELS, 'embed-sum') },
      'always-fails': { from: path.join(FIXTURE_MODELS, 'always-fails') },
    });
    p = await startPlatform({ models: repo.root, worker: false });
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    redis?.disconnect();
    await p?.close();
    repo?.remove();
  });

  const gateway = async () => parse(await (await fetch(`${p.baseUrl}/metrics`)).text());
  const worker = async () => parse(await (await fetch(`http://127.0.0.1:${p.worker!.metricsPort}/metrics`)).text());

  it('counts submits, replays, cancels, deadlines, successes and failures as documented', async () => {
    const N = 5;
    const M = 2;
    const K = 3;
    const R = 2;
    const ids: string[] = [];
    for (let i = 0; i < N; i++) ids.push((await postJob(p, { model: 'embed-sum', input: { ids: good(i) } })).job.id);
    for (let i = 0; i < M; i++) ids.push((await postJob(p, { model: 'embed-sum', input: { ids: poison(i) } })).job.id);
    // always-fails: one job
    const failId = (await postJob(p, { model: 'always-fails', input: await failsInput() })).job.id;
    // Idempotent: first + R replays
    const idem = { model: 'embed-sum', input: { ids: good(40) } };
    const first = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify(idem), headers: { 'idempotency-key': 'k-1' } });
    expect(first.status).to.equal(202);
    const idemId = ((await first.json()) as { id: string }).id;
    for (let r = 0; r < R; r++) {
      const again = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify(idem), headers: { 'idempotency-key': 'k-1' } });
      expect(again.status).to.equal(200);
      await again.text();
    }
    // K canceled while queued, and one cancel again (409)
    const toCancel: string[] = [];
    for (let i = 0; i < K; i++) toCancel.push((await postJob(p, { model: 'embed-sum', input: { ids: good(i + 10) } })).job.id);
    for (const id of toCancel) expect((await p.api(`/v1/jobs/${id}/cancel`, { method: 'POST' })).status).to.equal(200);
    expect((await p.api(`/v1/jobs/${toCancel[0]}/cancel`, { method: 'POST' })).status).to.equal(409);
    // A job with a short Cancel-After, queued while no worker runs
    const dl = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'embed-sum', input: { ids: good(30) } }), headers: { 'cancel-after': '200ms' } });
    expect(dl.status).to.equal(202);
    const dlId = ((await dl.json()) as { id: string }).id;

    const accepted = N + M + 1 + K + 1; // embed-sum: N + M + idem + K + deadline
    let g = await gateway();
    expect(value(g, 'infer_jobs_submitted_total', EMBED), 'submitted embed-sum').to.equal(accepted);
    expect(value(g, 'infer_jobs_submitted_total', FAILS), 'submitted always-fails').to.equal(1);
    expect(value(g, 'infer_jobs_ended_total', { ...EMBED, status: 'canceled' }), 'gateway canceled').to.equal(K);
    expect(value(g, 'infer_envelope_instances_sum', EMBED), 'envelope instances sum').to.equal(accepted);
    // queue depth: matches Redis's count
    const depth = value(g, 'infer_queue_depth', EMBED);
    expect(depth, 'queue depth after cancels').to.equal(accepted - K);
    const routes = (s: Sample[], k: string) => value(s, 'infer_http_request_duration_seconds_count', Object.fromEntries(k.split(' ').map((v, i) => [['method', 'route', 'status'][i]!, v])));
    expect(routes(g, 'POST /v1/jobs 202')).to.equal(accepted + 1);
    expect(routes(g, 'POST /v1/jobs 200')).to.equal(R);
    expect(routes(g, 'POST /v1/jobs/:id/cancel 200')).to.equal(K);
    expect(routes(g, 'POST /v1/jobs/:id/cancel 409')).to.equal(1);

    await elapse(300, 'the Cancel-After deadline passes while the job is queued');
    // Now a worker: everything ends.
    await p.startWorker();
    const all = [...ids, failId, idemId, dlId];
    const ended = await Promise.all(all.map((id) => pollJob(p, id, 20_000)));
    expect(ended.at(-1)!.status).to.equal('canceled');
    const w = await waitUntil(async () => {
      const s = await worker();
      const sum = ['succeeded', 'failed', 'canceled'].reduce((a, st) => a + value(s, 'infer_jobs_ended_total', { ...EMBED, status: st }), 0);
      return sum >= N + M + 2 ? s : null;
    }, 10_000, 'worker counts');
    expect(value(w, 'infer_jobs_ended_total', { ...EMBED, status: 'succeeded' }), 'succeeded').to.equal(N + 1);
    expect(value(w, 'infer_jobs_ended_total', { ...EMBED, status: 'failed' }), 'failed').to.equal(M);
    expect(value(w, 'infer_jobs_ended_total', { ...EMBED, status: 'canceled' }), 'deadline canceled').to.equal(1);
    expect(value(w, 'infer_jobs_ended_total', { ...FAILS, status: 'failed' }), 'always-fails failed').to.equal(1);
    expect(value(w, 'infer_inference_queue_duration_seconds_count', EMBED), 'queue histogram').to.equal(N + M + 1);
    expect(value(w, 'infer_inference_request_duration_seconds_count', EMBED), 'request histogram').to.equal(N + M + 1);
    expect(value(w, 'infer_inference_request_duration_seconds_count', FAILS), 'request histogram fails').to.equal(1);
    expect(value(w, 'infer_inference_count_total', EMBED)).to.equal(value(w, 'infer_batch_size_sum', EMBED));
    expect(value(w, 'infer_inference_exec_count_total', EMBED)).to.equal(value(w, 'infer_batch_size_count', EMBED));

    g = await gateway();
    expect(value(g, 'infer_queue_depth', EMBED), 'drained').to.equal(0);
    expect(value(g, 'infer_jobs_submitted_total', EMBED)).to.equal(accepted);
  });

  async function failsInput(): Promise<Record<string, unknown>> {
    const res = await p.api('/v1/models/always-fails');
    const m = (await res.json()) as { inputs: Array<{ name: string; datatype: string; shape: number[] }> };
    const out: Record<string, unknown> = {};
    for (const i of m.inputs) {
      const shape = i.shape.map((d) => (d < 0 ? 1 : d));
      const n = shape.reduce((a, b) => a * b, 1);
      out[i.name] = { datatype: i.datatype, shape, data: new Array(n).fill(1) };
    }
    return out;
  }
});
