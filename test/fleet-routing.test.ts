import { execFileSync } from 'node:child_process';
import { closeSync, constants, cpSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { Job, ModelDescription } from '@infer/contract';
import { FleetView, versionKey, WorkerHeartbeat } from '@infer/fleet';
import { silentLogger } from '@infer/logger';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { mlpFeatures } from './helpers/batches.js';
import { expectProblem, postJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { SHIPPED_MODELS, startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * The fleet as a gateway sees it: several workers, each serving part of the
 * models, routing among what live workers serve.
 */

const ADMIN = 'admin-secret';
const SERVED_MLP = path.join(SHIPPED_MODELS, 'mlp');
const ocrJob = { model: 'ocr-cls', input: { x: { datatype: 'FP32', shape: [3, 48, 192], b64: Buffer.alloc(3 * 48 * 192 * 4).toString('base64') } } };

/** A repository with real copies of the given mlp versions (and optionally ocr-cls linked in). */
function repoWith(mlpVersions: string[], ocr = false): TempModelRepo {
  const repo = tempModelRepo(ocr ? { 'ocr-cls': { from: path.join(SHIPPED_MODELS, 'ocr-cls') } } : {});
  mkdirSync(path.join(repo.root, 'mlp'), { recursive: true });
  cpSync(path.join(SERVED_MLP, 'config.json'), path.join(repo.root, 'mlp', 'config.json'));
  for (const v of mlpVersions) addVersion(repo, v);
  return repo;
}

function addVersion(repo: TempModelRepo, v: string): void {
  cpSync(path.join(SERVED_MLP, v), path.join(repo.root, 'mlp', v), { recursive: true, dereference: true });
}

const admin = (p: TestPlatform, pathname: string, init: RequestInit = {}) =>
  fetch(p.baseUrl + pathname, { ...init, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' } });

async function describeModel(p: TestPlatform, name = 'mlp'): Promise<ModelDescription> {
  const res = await p.api(`/v1/models/${name}`);
  expect(res.status).to.equal(200);
  return (await res.json()) as ModelDescription;
}
const stateOf = (m: ModelDescription, v: string) => m.versions_detail.find((d) => d.version === v)?.state;

describe('the fleet as gateways see it', function () {
  this.timeout(60_000);
  const repos: TempModelRepo[] = [];
  const workers: InferenceWorker[] = [];
  let p: TestPlatform | undefined;

  afterEach(async () => {
    for (const w of workers.splice(0)) await w.close();
    await p?.close();
    p = undefined;
    for (const r of repos.splice(0)) r.remove();
  });

  /** A worker process of its own, with its own repository folder. */
  async function workerOn(root: string, env: { models?: string[]; pollMs?: number } = {}): Promise<InferenceWorker> {
    const w = await createWorker(
      { ...p!.config, modelRepository: root, workerModels: env.models ?? [], modelPollMs: env.pollMs ?? p!.config.modelPollMs },
      silentLogger,
    );
    workers.push(w);
    await p!.gateway.catalog.refresh();
    return w;
  }

  describe('explicit routing when a version loses its workers', () => {
    it('splits unpinned jobs 90/10 between two workers each serving one version, and once the worker of one version is gone, sends every unpinned job to the other (no 503)', async () => {
      const gw = repoWith(['1', '2']);
      const only1 = repoWith(['1']);
      const only2 = repoWith(['2']);
      repos.push(gw, only1, only2);
      p = await startPlatform({ models: gw.root, worker: false, env: { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0', RATE_LIMIT_PER_SECOND: '1000000' } });
      await workerOn(only1.root);
      const w2 = await workerOn(only2.root);
      await waitUntil(async () => {
        const m = await describeModel(p!);
        return stateOf(m, '1') === 'ready' && stateOf(m, '2') === 'ready';
      }, 10_000, 'both versions ready');
      const set = await admin(p, '/v1/models/mlp/routing', { method: 'PUT', body: JSON.stringify({ weights: { '1': 90, '2': 10 } }) });
      expect(set.status, await set.clone().text()).to.equal(200);

      const counts: Record<string, number> = {};
      const ids: Array<[string, string]> = [];
      for (let i = 0; i < 300; i++) {
        const { job } = await postJob(p, { model: 'mlp', input: { features: mlpFeatures(i) } });
        counts[job.version] = (counts[job.version] ?? 0) + 1;
        if (i % 30 === 0) ids.push([job.id, job.version]);
      }
      expect(counts).to.deep.equal({ '1': 270, '2': 30 });
      for (const [id, version] of ids) {
        const res = await p.api(`/v1/jobs/${id}`, { headers: { prefer: 'wait=20' } });
        const job = (await res.json()) as Job;
        expect(job.status).to.equal('succeeded');
        expect(job.version).to.equal(version);
      }

      // The only worker serving version 2 stops: it leaves the fleet at once. Version 1 is still served.
      await w2.close();
      workers.splice(workers.indexOf(w2), 1);
      await p.gateway.catalog.refresh();
      const m = await describeModel(p);
      expect(stateOf(m, '2'), 'version 2 no longer ready').to.not.equal('ready');
      const statuses: number[] = [];
      for (let i = 0; i < 20; i++) {
        const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(i) } }) });
        statuses.push(res.status);
        await res.body?.cancel();
      }
      expect(statuses.filter((s) => s !== 202), `unpinned jobs refused though version 1 is served (routing ${JSON.stringify(m.routing)})`).to.deep.equal([]);
    });
  });

  describe('models per worker, versions loading, the last worker gone', () => {
    it('two workers with WORKER_MODELS each serving a different model: each model runs on its own worker', async () => {
      const gw = repoWith(['1', '2'], true);
      repos.push(gw);
      p = await startPlatform({ models: gw.root, worker: false, env: { MODEL_POLL_SECONDS: '0' } });
      await workerOn(gw.root, { models: ['mlp'] });
      await workerOn(gw.root, { models: ['ocr-cls'] });
      const ocr = await postJob(p, ocrJob, { wait: 20 });
      expect(ocr.job.status).to.equal('succeeded');
      const mlp = await postJob(p, { model: 'mlp', input: { features: mlpFeatures(1) } }, { wait: 20 });
      expect(mlp.job.status).to.equal('succeeded');
      const pinned = await postJob(p, { model: 'mlp', version: '1', input: { features: mlpFeatures(1) } }, { wait: 20 });
      expect(pinned.job.status).to.equal('succeeded');
      const r = (await (await fetch(`${p.baseUrl}/readyz`)).json()) as { models: Record<string, Record<string, { ready: boolean; workers_ready: number }>> };
      expect(r.models).to.deep.equal({
        mlp: { '1': { ready: true, workers_ready: 1 }, '2': { ready: true, workers_ready: 1 } },
        'ocr-cls': { '1': { ready: true, workers_ready: 1 } },
      });
      const list = (await (await p.api('/v1/models')).json()) as { data: ModelDescription[] };
      expect(list.data.map((d) => d.name).sort()).to.deep.equal(['mlp', 'ocr-cls']);
    });

    it('a version copied in that the gateway has loaded but no worker has yet is not routed to; it is once a worker has it ready', async () => {
      const gw = repoWith(['1'], false);
      repos.push(gw);
      // The gateway looks at the folder often; the worker only when an admin asks.
      p = await startPlatform({ models: gw.root, worker: false, env: { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0.2' } });
      await workerOn(gw.root, { pollMs: 0 });
      addVersion(gw, '2');
      await waitUntil(async () => stateOf(await describeModel(p!), '2') === 'loading', 10_000, 'version 2 loading on the gateway');
      const m = await describeModel(p);
      expect(m.routing).to.deep.equal({ '1': 100 });
      expect(m.default_version).to.equal('1');
      for (let i = 0; i < 10; i++) {
        const { res, job } = await postJob(p, { model: 'mlp', input: { features: mlpFeatures(i) } });
        expect(res.status).to.equal(202);
        expect(job.version).to.equal('1');
      }
      const load = await admin(p, '/v1/models/mlp/versions/2/load', { method: 'POST' });
      expect(load.status).to.equal(202);
      await waitUntil(async () => stateOf(await describeModel(p!), '2') === 'ready', 20_000, 'version 2 ready');
      await p.gateway.catalog.refresh();
      const { job } = await postJob(p, { model: 'mlp', input: { features: mlpFeatures(1) } }, { wait: 20 });
      expect(job.version).to.equal('2');
      expect(job.status).to.equal('succeeded');
    });

    it('a pinned job for a version a live worker is still loading is queued (not refused), and runs once the load ends', async () => {
      const gw = repoWith(['1', '2']);
      const wk = repoWith(['1']);
      repos.push(gw, wk);
      p = await startPlatform({ models: gw.root, worker: false, env: { MODEL_POLL_SECONDS: '0' } });
      await workerOn(wk.root, { pollMs: 100 });
      // Version 2 appears in the worker's folder as a named pipe: its load (the read of model.onnx) lasts
      // until the test writes the model's bytes into it, as a large model's would for seconds.
      const dir = path.join(wk.root, 'mlp', '2');
      mkdirSync(dir);
      const fifo = path.join(dir, 'model.onnx');
      execFileSync('mkfifo', [fifo]);
      const redis = new Redis(TEST_REDIS_URL);
      let written = false;
      try {
        const fleet = new FleetView(redis, p.prefix);
        await waitUntil(
          async () => {
            await fleet.refresh();
            return ((await fleet.versions()).get(versionKey('mlp', '2'))?.loading ?? 0) > 0;
          },
          10_000,
          'the worker to report version 2 loading',
        );
        await p.gateway.catalog.refresh();
        const { res, job } = await postJob(p, { model: 'mlp', version: '2', input: { features: mlpFeatures(3) } });
        expect(res.status, JSON.stringify(job)).to.equal(202);
        expect(job.status).to.equal('queued');
        await writeFile(fifo, readFileSync(path.join(SERVED_MLP, '2', 'model.onnx')));
        written = true;
        const done = (await (await p.api(`/v1/jobs/${job.id}`, { headers: { prefer: 'wait=20' } })).json()) as Job;
        expect({ status: done.status, version: done.version }).to.deep.equal({ status: 'succeeded', version: '2' });
      } finally {
        redis.disconnect();
        // Failed before the write: end the worker's read (an empty file, whose load fails), or it would hold its close forever.
        if (!written) {
          try {
            closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
          } catch {
            rmSync(fifo, { force: true }); // no reader yet (ENXIO): none will find it now
          }
        }
      }
    });

    it('after the last worker dies (no goodbye), jobs for every version queue, and run when a worker returns', async () => {
      const gw = repoWith(['1', '2'], true);
      repos.push(gw);
      p = await startPlatform({ models: gw.root, worker: false, env: { MODEL_POLL_SECONDS: '0' } });
      const redis = new Redis(TEST_REDIS_URL);
      const ghost = new WorkerHeartbeat(redis, p.prefix, 'ghost', () => [{ model: 'mlp', version: '1', state: 'ready' }]);
      try {
        await ghost.start();
        await p.gateway.catalog.refresh();
        // Alive, serving mlp 1 only: ocr-cls refused; unpinned mlp routed to 1.
        await expectProblem(await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify(ocrJob) }), 503, 'unavailable');
        expect((await describeModel(p)).routing).to.deep.equal({ '1': 100 });
        const { job: toOne } = await postJob(p, { model: 'mlp', input: { features: mlpFeatures(1) } });
        expect(toOne.version).to.equal('1');
        await expectProblem(await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: '2', input: { features: mlpFeatures(1) } }) }), 503, 'unavailable');
        await ghost.stop({ leave: false });
        const queued = await waitUntil(
          async () => {
            const res = await p!.api('/v1/jobs', { method: 'POST', body: JSON.stringify(ocrJob) });
            if (res.status !== 202) {
              await res.body?.cancel();
              return undefined;
            }
            return (await res.json()) as Job;
          },
          12_000,
          'ocr-cls jobs to queue once the last worker is dead',
        );
        const { res: pinnedRes, job: pinned2 } = await postJob(p, { model: 'mlp', version: '2', input: { features: mlpFeatures(2) } });
        expect(pinnedRes.status).to.equal(202);
        await p.startWorker();
        for (const id of [queued.id, pinned2.id, toOne.id]) {
          const res = await p.api(`/v1/jobs/${id}`, { headers: { prefer: 'wait=20' } });
          expect(((await res.json()) as Job).status, id).to.equal('succeeded');
        }
      } finally {
        await ghost.stop({ leave: true });
        redis.disconnect();
      }
    });
  });
});
