import { expect } from 'chai';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { cubicModel } from './helpers/slow-models.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A worker's `/healthz` is its liveness probe and `/metrics` its scrape
 * (docs/operations.md). onnxruntime-node holds the worker's main event loop
 * for the whole of a model run, and a healthy run may last up to
 * WORKER_MAX_RUN_MS (15 min by default): served on that loop, a probe with
 * Kubernetes' default 1 s timeout got no answer during a run of a few
 * seconds, so a healthy worker in a long run would be restarted mid-run
 * (and compose's Prometheus, with a 4 s scrape timeout, lost the worker
 * while it worked). Both are served from a thread of their own: /healthz
 * answers 200 through a run and 503 once the loop has been silent past
 * WORKER_MAX_RUN_MS; /metrics answers with the last scrape while a run
 * holds the loop.
 */
describe("a worker's /healthz and /metrics while a model run holds its event loop", function () {
  this.timeout(120_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let worker: Spawned | undefined;

  before(async () => {
    repo = tempModelRepo({ cubic: { onnx: cubicModel(24), config: { max_batch_size: 1, max_delay_ms: 0 } } });
    p = await startPlatform({ models: repo.root, worker: false });
  });
  afterEach(async () => {
    if (worker?.groupAlive()) {
      worker.signalGroup('SIGTERM');
      await worker.exit(20_000).catch(() => worker!.kill());
    }
    worker = undefined;
  });
  after(async () => {
    await p?.close();
    repo?.remove();
  });

  /** Probe as Kubernetes does by default (timeoutSeconds: 1): the status, or that none came. */
  const probe = (port: number, path: string) =>
    fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(1000) }).then(
      async (r) => ({ status: r.status, body: await r.text() }),
      (err: Error) => ({ status: 0, body: `no answer within 1 s (${err.name})` }),
    );

  /** Start a worker process; submit one job whose run takes seconds; resolve once it runs. */
  async function workerInARun(env: Record<string, string> = {}): Promise<{ port: number; id: string }> {
    worker = new Spawned('start:worker', { REDIS_URL: p.config.redisUrl, QUEUE_PREFIX: p.prefix, MODEL_REPOSITORY: repo.root, WORKER_METRICS_PORT: '0', ...env });
    await worker.waitForLog('worker started', 60_000);
    await p.gateway.catalog.refresh();
    const port = Number(worker.logged('worker started')[0]!.metricsPort);
    expect((await probe(port, '/healthz')).status, 'idle').to.equal(200);
    // A scrape before the run: what a busy worker answers with.
    const before = await probe(port, '/metrics');
    expect(before.status).to.equal(200);
    expect(before.body).to.include('infer_worker_up 1');
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'cubic', input: { x: new Array(2304).fill(0) } }) });
    expect(res.status).to.equal(202);
    const { id } = (await res.json()) as { id: string };
    await waitUntil(async () => ((await (await p.api(`/v1/jobs/${id}`)).json()) as { status: string }).status === 'running', 30_000, 'the job to be running');
    return { port, id };
  }

  const ended = (id: string) =>
    waitUntil(async () => {
      const j = (await (await p.api(`/v1/jobs/${id}`)).json()) as { status: string; metrics?: { inference_ms: number } };
      return j.status === 'succeeded' ? j : undefined;
    }, 60_000, 'the job to succeed');

  it('a run within WORKER_MAX_RUN_MS: /healthz answers 200 and /metrics answers, within a second, while it runs', async () => {
    const { port, id } = await workerInARun();
    const health = await probe(port, '/healthz');
    const scrape = await probe(port, '/metrics');
    // The probes were answered while the run held the loop: the job had not ended yet.
    expect(((await (await p.api(`/v1/jobs/${id}`)).json()) as { status: string }).status).to.equal('running');
    await ended(id);
    expect(health).to.deep.equal({ status: 200, body: '{"status":"ok"}' });
    expect(scrape.status, scrape.body).to.equal(200);
    expect(scrape.body).to.include('infer_worker_up 1');
  });

  it('a run past WORKER_MAX_RUN_MS: /healthz answers 503 (hung) while the loop is silent, and 200 once it turns again', async () => {
    const { port } = await workerInARun({ WORKER_MAX_RUN_MS: '1000' });
    const hung = await waitUntil(async () => {
      const h = await probe(port, '/healthz');
      return h.status === 503 ? h : undefined;
    }, 20_000, '/healthz to say the worker is hung');
    expect(JSON.parse(hung.body)).to.include({ status: 'hung' });
    await waitUntil(async () => (await probe(port, '/healthz')).status === 200, 60_000, '/healthz to answer 200 again once the run has ended');
  });
});
