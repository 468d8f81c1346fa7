import { cpSync, renameSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import type { Job, ModelDescription } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { SHIPPED_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A model whose every version was let go (its only version unloaded by an
 * admin, or its folder removed) is not forgotten: docs/rollouts.md, "an
 * unloaded version comes back with …/load" and "putting the folder back loads
 * it again". Each process keeps reading the state of every model that has a
 * folder in the repository, not only of those with a version loaded, so it
 * sees the admin's load, or the removed version's folder coming back.
 */

const ADMIN = 'comes-back-admin-key';
const SERVED_MLP = path.join(SHIPPED_MODELS, 'mlp');
const env = { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0.2', WORKER_METRICS_PORT: '0' };

describe('lifecycle: a model whose every version was let go comes back', function () {
  this.timeout(90_000);
  let repo: TempModelRepo | undefined;
  let p: TestPlatform | undefined;
  let worker: InferenceWorker | undefined;

  /** A gateway and a worker, each with its own view of a repository holding mlp version 1 only. */
  beforeEach(async () => {
    repo = tempModelRepo({});
    cpSync(path.join(SERVED_MLP, '1'), path.join(repo.root, 'mlp', '1'), { recursive: true, dereference: true });
    p = await startPlatform({ models: repo.root, worker: false, env });
    worker = await createWorker(p.config, silentLogger);
    await p.gateway.catalog.refresh();
  });
  afterEach(async () => {
    await worker?.close();
    worker = undefined;
    await p?.close();
    p = undefined;
    repo?.remove();
    repo = undefined;
  });

  const admin = (pathname: string) => fetch(p!.baseUrl + pathname, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
  const model = async (): Promise<ModelDescription | null> => {
    const res = await p!.api('/v1/models/mlp');
    return res.status === 200 ? ((await res.json()) as ModelDescription) : null;
  };
  /** No version left to take jobs: the model is gone, or listed with none. */
  const letGo = async () => {
    const m = await model();
    return m === null || (m.versions.length === 0 && m.versions_detail.length === 0);
  };
  const ready = async () => (await model())?.versions_detail.find((d) => d.version === '1')?.state === 'ready';
  const runsAJob = async () => {
    const res = await p!.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=20' }, body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } }) });
    expect(res.status).to.equal(200);
    expect(((await res.json()) as Job).status).to.equal('succeeded');
  };

  it('unloaded (its only version), then loaded again by an admin: 202, then ready, and it runs jobs', async () => {
    await waitUntil(ready, 20_000, 'version 1 ready');
    expect((await admin('/v1/models/mlp/versions/1/unload')).status).to.equal(202);
    await waitUntil(letGo, 20_000, 'mlp let go');
    const load = await admin('/v1/models/mlp/versions/1/load');
    expect(load.status, await load.clone().text()).to.equal(202);
    await waitUntil(ready, 20_000, 'version 1 ready again');
    await runsAJob();
  });

  it('its folder removed (its only version), then put back: ready again, and it runs jobs', async () => {
    await waitUntil(ready, 20_000, 'version 1 ready');
    const away = path.join(repo!.root, '..', `${path.basename(repo!.root)}-away`);
    renameSync(path.join(repo!.root, 'mlp', '1'), away);
    await waitUntil(letGo, 20_000, 'mlp let go');
    renameSync(away, path.join(repo!.root, 'mlp', '1'));
    await waitUntil(ready, 20_000, 'version 1 ready again');
    await runsAJob();
  });
});
