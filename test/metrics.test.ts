import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { EMBED_ROWS } from '../scripts/build-models.js';
import { submitBatch, waitForBatchEnd } from './helpers/batches.js';
import { pollJob, postJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { FIXTURE_MODELS, REPO_ROOT, startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';
import { parse, value, type Sample } from './helpers/prometheus.js';

/**
 * Every process is scrapeable, and the figures say what happened: a load of
 * single jobs (two of them poison), a bulk batch and a job whose webhook
 * receiver answers 500, queued while no worker runs, then run.
 */


/** Whether any sample is named `name` with these labels. */
function has(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): boolean {
  return samples.some((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

async function scrape(url: string): Promise<{ text: string; samples: Sample[] }> {
  const res = await fetch(url);
  expect(res.status, url).to.equal(200);
  expect(res.headers.get('content-type')).to.match(/^text\/plain/);
  const text = await res.text();
  return { text, samples: parse(text) };
}

const EMBED = { model: 'embed-sum', version: '1' };
const goodIds = (seed: number): number[] => Array.from({ length: 4 }, (_, k) => (seed * 7 + k * 3) % EMBED_ROWS);
const poisonIds = (seed: number): number[] => [seed % EMBED_ROWS, EMBED_ROWS + (seed % 5), 1, 2];

/** A webhook receiver that answers every delivery 500. */
async function failingReceiver(): Promise<{ url: string; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      hits++;
      res.writeHead(500).end('no');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    hits: () => hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

describe('metrics: every process is scrapeable', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let receiver: Awaited<ReturnType<typeof failingReceiver>>;
  before(async () => {
    repo = tempModelRepo({ 'embed-sum': { from: path.join(FIXTURE_MODELS, 'embed-sum') } });
    receiver = await failingReceiver();
    p = await startPlatform({ models: repo.root, worker: false, env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '20,20' } });
  });
  after(async () => {
    await p?.close();
    await receiver?.close();
    repo?.remove();
  });

  const gateway = () => scrape(`${p.baseUrl}/metrics`);
  const worker = () => scrape(`http://127.0.0.1:${p.worker!.metricsPort}/metrics`);

  it('reports queue depth and age while no worker runs, then the jobs, runs, failures and webhook outcomes once one has', async () => {
    // Nothing yet: the queue is empty, no worker is live.
    let g = await gateway();
    expect(value(g.samples, 'infer_queue_depth', EMBED)).to.equal(0);
    expect(value(g.samples, 'infer_fleet_workers_live')).to.equal(0);
    expect(has(g.samples, 'process_cpu_user_seconds_total'), 'default process metrics').to.equal(true);

    // 10 good jobs, 2 poison ones (ONNX Runtime throws on them), 1 whose webhook receiver answers 500: 11 succeed, 2 fail.
    const poisoned = new Set([3, 8]);
    const jobs = await Promise.all(Array.from({ length: 12 }, (_, i) => postJob(p, { model: 'embed-sum', input: { ids: poisoned.has(i) ? poisonIds(i) : goodIds(i) } })));
    jobs.push(await postJob(p, { model: 'embed-sum', input: { ids: goodIds(20) }, webhook: receiver.url }));
    const batch = await submitBatch(p, { json: { model: 'embed-sum', items: Array.from({ length: 20 }, (_, i) => ({ custom_id: `r${i}`, input: { ids: goodIds(i) } })) } });

    // Queued, and waiting longer with every scrape.
    g = await gateway();
    expect(value(g.samples, 'infer_queue_depth', EMBED)).to.equal(13);
    expect(value(g.samples, 'infer_queue_backlog_per_worker', EMBED), 'no worker: the whole depth').to.equal(13);
    expect(value(g.samples, 'infer_bulk_queue_chunks', { ...EMBED, state: 'waiting' })).to.be.at.least(1);
    const age = value(g.samples, 'infer_queue_oldest_age_seconds', { ...EMBED, queue: 'interactive' });
    await waitUntil(async () => value((await gateway()).samples, 'infer_queue_oldest_age_seconds', { ...EMBED, queue: 'interactive' }) > age, 5000, 'the oldest job to age');
    await waitUntil(async () => value((await gateway()).samples, 'infer_queue_oldest_age_seconds', { ...EMBED, queue: 'bulk' }) > 0, 5000, 'the oldest chunk to age');

    // A worker comes: everything runs.
    await p.startWorker();
    const ended = await Promise.all(jobs.map((s) => pollJob(p, s.job.id, 20_000)));
    expect(ended.map((j) => j.status).filter((s) => s === 'failed')).to.have.length(2);
    expect((await waitForBatchEnd(p, batch.id)).request_counts).to.include({ succeeded: 20, failed: 0 });

    // The gateway: the queues drained, the worker live; the jobs it took.
    g = await waitUntil(
      async () => {
        const s = await gateway();
        const drained = value(s.samples, 'infer_queue_depth', EMBED) === 0 && value(s.samples, 'infer_bulk_queue_chunks', { ...EMBED, state: 'waiting' }) === 0;
        return drained && value(s.samples, 'infer_fleet_workers', { ...EMBED, state: 'ready' }) === 1 ? s : null;
      },
      10_000,
      'the queues to drain and the worker to show',
    );
    expect(value(g.samples, 'infer_queue_oldest_age_seconds', EMBED)).to.equal(0);
    expect(value(g.samples, 'infer_fleet_workers_live')).to.equal(1);
    expect(value(g.samples, 'infer_queue_backlog_per_worker', EMBED)).to.equal(0);
    expect(value(g.samples, 'infer_jobs_submitted_total', EMBED)).to.equal(13);
    expect(value(g.samples, 'infer_envelope_instances_count', EMBED)).to.be.at.least(2);
    expect(has(g.samples, 'infer_requests_rejected_total', { reason: 'queue_full' }), 'rejections present at 0').to.equal(true);

    // The worker: up, the jobs' ends per version, runs of more than one instance, bulk rows.
    let w = await worker();
    expect(value(w.samples, 'infer_worker_up')).to.equal(1);
    expect(value(w.samples, 'infer_jobs_ended_total', { ...EMBED, status: 'succeeded' })).to.equal(11);
    expect(value(w.samples, 'infer_jobs_ended_total', { ...EMBED, status: 'failed' })).to.equal(2);
    expect(value(w.samples, 'infer_bulk_rows_total', { ...EMBED, status: 'succeeded' })).to.equal(20);
    const runs = value(w.samples, 'infer_batch_size_count', EMBED);
    const runsOfOne = value(w.samples, 'infer_batch_size_bucket', { ...EMBED, le: '1' });
    expect(runs - runsOfOne, 'runs of more than one instance').to.be.at.least(1);
    expect(value(w.samples, 'infer_inference_exec_count_total', EMBED)).to.equal(runs);
    expect(value(w.samples, 'infer_inference_count_total', EMBED)).to.equal(value(w.samples, 'infer_batch_size_sum', EMBED));
    // Every job that ran (all 13) waited in the queue and ended: both histograms count them.
    expect(value(w.samples, 'infer_inference_queue_duration_seconds_count', EMBED)).to.equal(13);
    expect(value(w.samples, 'infer_inference_request_duration_seconds_count', EMBED)).to.equal(13);
    expect(value(w.samples, 'infer_inference_queue_duration_seconds_sum', EMBED)).to.be.greaterThan(0);
    expect(has(w.samples, 'nodejs_eventloop_lag_seconds'), 'default process metrics').to.equal(true);

    // The webhook: 3 attempts (WEBHOOK_RETRY_DELAYS_MS has 2 delays), 2 retried, the last failed for good.
    w = await waitUntil(
      async () => {
        const s = await worker();
        return value(s.samples, 'infer_webhook_deliveries_total', { outcome: 'failed' }) >= 1 ? s : null;
      },
      10_000,
      'the webhook delivery to fail for good',
    );
    expect(value(w.samples, 'infer_webhook_deliveries_total', { outcome: 'failed' })).to.equal(1);
    expect(value(w.samples, 'infer_webhook_deliveries_total', { outcome: 'retrying' })).to.equal(2);
    expect(value(w.samples, 'infer_webhook_deliveries_total', { outcome: 'succeeded' })).to.equal(0);
    expect(value(w.samples, 'infer_webhook_delivery_duration_seconds_count')).to.equal(3);
    expect(receiver.hits()).to.equal(3);

    // The Grafana dashboard asks only for metrics the processes serve.
    const served = new Set([...g.text.matchAll(/^# TYPE (\S+) /gm), ...w.text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
    const dashboard = readFileSync(path.join(REPO_ROOT, 'deploy', 'grafana', 'dashboards', 'infer.json'), 'utf8');
    const asked = new Set([...dashboard.matchAll(/\b((?:infer|nodejs|process)_[a-z0-9_]+)/g)].map((m) => m[1]!.replace(/_(bucket|sum|count)$/, '')));
    expect(asked.size).to.be.at.least(10);
    for (const name of asked) expect(served.has(name), `the dashboard's ${name}`).to.equal(true);
  });

  it("serves /healthz on the worker's port, and 404 elsewhere", async () => {
    const base = `http://127.0.0.1:${p.worker!.metricsPort}`;
    const health = await fetch(`${base}/healthz`);
    expect(health.status).to.equal(200);
    expect(await health.json()).to.deep.equal({ status: 'ok' });
    expect((await fetch(`${base}/nope`)).status).to.equal(404);
  });

  it('labels requests with their full route pattern, or unmatched', async () => {
    await p.api('/v1/models/embed-sum');
    await p.api('/v1/models');
    await p.api('/v1/batches/nope'); // 404 batch_not_found: an error thrown inside the router
    await p.api('/v1/batches/nope/cancel', { method: 'POST' });
    await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'embed-sum', input: { ids: [1] } }) }); // 422
    await p.api('/v1/batches/nope', { key: 'not-a-key' }); // 401 from the guard, before Express matched a route
    await p.api('/no/such/route');
    const routes = (s: Sample[]) =>
      new Set(s.filter((x) => x.name === 'infer_http_request_duration_seconds_count').map((x) => `${x.labels.method} ${x.labels.route} ${x.labels.status}`));
    const seen = routes((await gateway()).samples);
    for (const r of [
      'GET /v1/models/:name 200',
      'GET /v1/models 200',
      'GET /v1/batches/:id 404',
      'POST /v1/batches/:id/cancel 404',
      'POST /v1/jobs 422',
      'GET /v1/batches/:id 401',
      'GET unmatched 404',
    ]) {
      expect(seen.has(r), `${r} in ${[...seen].join(', ')}`).to.equal(true);
    }
    for (const r of seen) expect(r, 'a route label is a pattern, never a path').to.not.match(/nope|no\/such/);
  });
});

describe('metrics: rejections', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ worker: false, env: { MAX_QUEUE_DEPTH: '1', RATE_LIMIT_PER_SECOND: '5' } });
  });
  after(async () => {
    await p?.close();
  });

  it('counts queue_full and rate_limited refusals by reason', async () => {
    const job = JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } });
    expect((await p.api('/v1/jobs', { method: 'POST', body: job })).status).to.equal(202);
    expect((await p.api('/v1/jobs', { method: 'POST', body: job })).status).to.equal(503);
    const burst = await Promise.all(Array.from({ length: 20 }, () => p.api('/v1/models')));
    const limited = burst.filter((r) => r.status === 429).length;
    expect(limited).to.be.at.least(1);
    const s = parse(await (await p.api('/metrics', { key: null })).text());
    expect(value(s, 'infer_requests_rejected_total', { reason: 'queue_full' })).to.equal(1);
    expect(value(s, 'infer_requests_rejected_total', { reason: 'rate_limited' })).to.equal(limited);
    expect(value(s, 'infer_requests_rejected_total', { reason: 'quota_exceeded' })).to.equal(0);
  });
});

describe('metrics: the compose monitoring stack', () => {
  const read = (...parts: string[]) => readFileSync(path.join(REPO_ROOT, ...parts), 'utf8');
  type Yaml = { load(text: string): unknown };
  type Obj = Record<string, unknown>;

  it('parses, scrapes the gateway and every worker replica through DNS, and provisions the datasource and dashboard Grafana shows', async function () {
    // js-yaml comes with the dev tools (mocha), not as a dependency of ours: named at run time, skipped if absent.
    const name = 'js-yaml';
    const yaml = (await import(name).catch(() => undefined)) as Yaml | undefined;
    if (!yaml) this.skip();
    const compose = yaml!.load(read('docker-compose.yml')) as { services: Record<string, Obj> };
    const { prometheus, grafana, worker } = compose.services;
    expect(prometheus?.image).to.match(/^prom\/prometheus:/);
    expect(grafana?.image).to.match(/^grafana\/grafana/);
    expect((worker!.environment as Obj).WORKER_METRICS_PORT).to.equal('9464');
    // Every file or folder the stack mounts from the repository exists.
    const mounts = [...(prometheus!.volumes as string[]), ...(grafana!.volumes as string[])].filter((v) => v.startsWith('./'));
    expect(mounts).to.have.length(3);
    for (const m of mounts) expect(existsSync(path.join(REPO_ROOT, m.split(':')[0]!)), m).to.equal(true);
    const dashboardsMount = (grafana!.volumes as string[]).find((v) => v.startsWith('./deploy/grafana/dashboards:'))!.split(':')[1];

    const config = yaml!.load(read('deploy', 'prometheus', 'prometheus.yml')) as { scrape_configs: Array<{ job_name: string; dns_sd_configs?: Obj[] }> };
    const job = (n: string) => config.scrape_configs.find((c) => c.job_name === n)?.dns_sd_configs?.[0];
    expect(job('worker')).to.deep.include({ names: ['worker'], type: 'A', port: 9464 });
    expect(job('gateway')).to.deep.include({ names: ['gateway'], type: 'A', port: 8080 });

    const datasources = yaml!.load(read('deploy', 'grafana', 'provisioning', 'datasources', 'prometheus.yml')) as { datasources: Obj[] };
    expect(datasources.datasources[0]).to.include({ type: 'prometheus', url: 'http://prometheus:9090', uid: 'prometheus' });
    const providers = yaml!.load(read('deploy', 'grafana', 'provisioning', 'dashboards', 'infer.yml')) as { providers: Array<{ options: Obj }> };
    expect(providers.providers[0]!.options.path).to.equal(dashboardsMount);

    const dashboard = JSON.parse(read('deploy', 'grafana', 'dashboards', 'infer.json')) as { uid: string; panels: Array<{ type: string; datasource?: Obj; targets?: Array<{ expr: string }> }> };
    const graphs = dashboard.panels.filter((p) => p.type !== 'row');
    expect(graphs.length).to.be.at.least(15);
    for (const p of graphs) {
      expect(p.datasource).to.deep.equal({ type: 'prometheus', uid: 'prometheus' });
      expect(p.targets!.length).to.be.at.least(1);
    }
  });
});
