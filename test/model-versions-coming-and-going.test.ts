import { cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import type { ModelDescription, ModelEvent } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { SHIPPED_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * Versions coming and going while the platform runs, as
 * docs/api.md ("Model lifecycle") and docs/rollouts.md describe them.
 * A gateway and a worker with repositories of their own (as separate
 * processes), polling the folder every 0.2 s.
 */

const ADMIN = 'versions-admin';
const SERVED_MLP = path.join(SHIPPED_MODELS, 'mlp');
const env = { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0.2', WORKER_METRICS_PORT: '0' };

describe('models: versions coming and going', function () {
  this.timeout(90_000);
  let repo: TempModelRepo | undefined;
  let p: TestPlatform | undefined;
  let worker: InferenceWorker | undefined;
  /** A gateway with a repository of its own (as a gateway process has): it lets go of drained versions itself. */
  let own: { gateway: Gateway; baseUrl: string } | undefined;

  async function ownGateway(): Promise<{ gateway: Gateway; baseUrl: string }> {
    const gateway = await createGateway(p!.config, silentLogger);
    const port = await gateway.listen(0, '127.0.0.1');
    own = { gateway, baseUrl: `http://127.0.0.1:${port}` };
    return own;
  }

  async function start(versions: string[]): Promise<TestPlatform> {
    repo = tempModelRepo({});
    for (const v of versions) cpSync(path.join(SERVED_MLP, v), path.join(repo.root, 'mlp', v), { recursive: true, dereference: true });
    cpSync(path.join(SERVED_MLP, 'config.json'), path.join(repo.root, 'mlp', 'config.json'));
    p = await startPlatform({ models: repo.root, worker: false, env });
    worker = await createWorker(p.config, silentLogger);
    await p.gateway.catalog.refresh();
    return p;
  }

  afterEach(async () => {
    await own?.gateway.close();
    own = undefined;
    await worker?.close();
    worker = undefined;
    await p?.close();
    p = undefined;
    repo?.remove();
    repo = undefined;
  });

  const admin = (pathname: string, init: RequestInit = {}) => fetch(p!.baseUrl + pathname, { ...init, headers: { authorization: `Bearer ${ADMIN}`, ...(init.body ? { 'content-type': 'application/json' } : {}) } });
  const model = async (): Promise<ModelDescription | null> => {
    const res = await p!.api('/v1/models/mlp');
    return res.status === 200 ? ((await res.json()) as ModelDescription) : null;
  };
  const detail = async (version: string) => (await model())?.versions_detail.find((d) => d.version === version);
  const events = async (): Promise<ModelEvent[]> => {
    const res = await admin('/v1/models/mlp/events?limit=100');
    expect(res.status, await res.clone().text()).to.equal(200);
    return ((await res.json()) as { data: ModelEvent[] }).data;
  };

  it('the events log and the rollouts of a model whose only version was unloaded (its folder still there) can still be read', async () => {
    await start(['1']);
    const g = await ownGateway();
    const viaOwn = (pathname: string, init: RequestInit = {}) => fetch(g.baseUrl + pathname, { ...init, headers: { authorization: `Bearer ${ADMIN}` } });
    await waitUntil(async () => (await detail('1'))?.state === 'ready', 20_000, 'version 1 ready');
    expect((await viaOwn('/v1/models/mlp/versions/1/unload', { method: 'POST' })).status).to.equal(202);
    // Let go: the worker announced it unloaded, and the gateway no longer lists the model.
    await waitUntil(async () => (await events()).some((e) => e.type === 'version_unloaded' && e.data.state === 'unloaded'), 20_000, 'version 1 unloaded');
    await waitUntil(async () => (await viaOwn('/v1/models/mlp')).status === 404, 20_000, 'mlp let go by the gateway');
    // The model's folder is in the repository (…/load takes it back: 202, not 404 model_not_found),
    // and its events log holds the unload: an admin reads it to see the version was let go.
    const ev = await viaOwn('/v1/models/mlp/events?limit=100');
    expect(ev.status, `GET …/events after the last version was let go: ${await ev.clone().text()}`).to.equal(200);
    const data = ((await ev.json()) as { data: ModelEvent[] }).data;
    expect(data.some((e) => e.type === 'version_unloaded' && e.data.state === 'unloaded')).to.equal(true);
    const ro = await viaOwn('/v1/models/mlp/rollouts');
    expect(ro.status, `GET …/rollouts after the last version was let go: ${await ro.clone().text()}`).to.equal(200);
  });

  it('a draining version that its worker still holds (serving its queued jobs) counts that worker in workers_ready, as the walkthrough shows (WORKERS 1)', async () => {
    await start(['1', '2']);
    await waitUntil(async () => (await detail('1'))?.state === 'ready' && (await detail('2'))?.state === 'ready', 20_000, 'versions ready');
    expect((await admin('/v1/models/mlp/versions/1/unload', { method: 'POST' })).status).to.equal(202);
    // The worker marks it draining at once and closes its queue only 3 s later (DRAIN_GRACE_MS): meanwhile it
    // holds it loaded. Watch it over that time (while the worker still holds it): every look should count it.
    type Readyz = { models?: Record<string, Record<string, { ready: boolean; workers_ready: number }>> };
    let sawDraining = false;
    const miscounted = await waitUntil(
      async () => {
        const d = await detail('1');
        const ready = (await (await fetch(p!.baseUrl + '/readyz')).json()) as Readyz;
        if (worker!.models.find('mlp', '1') === undefined || d?.state !== 'draining') return undefined;
        sawDraining = true;
        const r = ready.models?.mlp?.['1'];
        return d.workers_ready !== 1 || r?.workers_ready !== 1 || r.ready !== false ? { versions_detail: d.workers_ready, readyz: r } : undefined;
      },
      2_500,
      'version 1 draining and miscounted',
    ).catch(() => undefined);
    expect(sawDraining, 'version 1 seen draining while the worker holds it').to.equal(true);
    expect(miscounted ?? { versions_detail: 1, readyz: { ready: false, workers_ready: 1 } }, 'the worker has version 1 loaded (draining, serving what is queued): versions_detail and /readyz count it; /readyz does not call it ready (it takes no new job)').to.deep.equal({
      versions_detail: 1,
      readyz: { ready: false, workers_ready: 1 },
    });
  });

  it('while its only version drains, an unpinned job is 503 unavailable with Retry-After: 5, and the routing is {}', async () => {
    await start(['1']);
    await waitUntil(async () => (await detail('1'))?.state === 'ready', 20_000, 'version 1 ready');
    expect((await admin('/v1/models/mlp/versions/1/unload', { method: 'POST' })).status).to.equal(202);
    const m = await model();
    expect(m?.versions_detail.find((d) => d.version === '1')?.state).to.equal('draining');
    expect(m?.routing).to.deep.equal({});
    const res = await p!.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } }) });
    expect(res.status, await res.clone().text()).to.equal(503);
    expect(res.headers.get('retry-after')).to.equal('5');
  });

  it('a broken version whose folder was removed and that is copied in broken again is recorded as failed again (version_failed)', async () => {
    await start(['1']);
    await waitUntil(async () => (await detail('1'))?.state === 'ready', 20_000, 'version 1 ready');
    const dir = path.join(repo!.root, 'mlp', '5');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'model.onnx'), 'not a model, first try');
    await waitUntil(async () => (await detail('5'))?.state === 'failed', 20_000, 'version 5 failed');
    await waitUntil(async () => (await events()).filter((e) => e.type === 'version_failed').length === 1, 10_000, 'first version_failed');
    rmSync(dir, { recursive: true });
    await waitUntil(async () => (await detail('5')) === undefined, 20_000, 'version 5 gone');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'model.onnx'), 'still not a model, second try');
    await waitUntil(async () => (await detail('5'))?.state === 'failed', 20_000, 'version 5 failed again');
    const failed = await waitUntil(async () => {
      const n = (await events()).filter((e) => e.type === 'version_failed').length;
      return n >= 2 ? n : undefined;
    }, 5_000, 'a second version_failed').catch(() => 1);
    expect(failed, 'version_failed events: the second failure to load is not in the events log').to.equal(2);
  });
});
