/**
 * The model events log as an operator reads it around unloads (a version
 * unloaded while no worker is live still gets its `unloaded` event once a
 * worker lets it go), and jobs waiting (`Prefer: wait`) across a drain.
 */
import { expect } from 'chai';
import type { ModelDescription, ModelEvent } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { mlpFeatures } from './helpers/batches.js';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

const ADMIN = 'lifecycle-admin';

async function describeMlp(p: TestPlatform): Promise<ModelDescription> {
  return (await (await p.api('/v1/models/mlp')).json()) as ModelDescription;
}
async function events(p: TestPlatform): Promise<ModelEvent[]> {
  const res = await fetch(`${p.baseUrl}/v1/models/mlp/events?limit=100`, { headers: { authorization: `Bearer ${ADMIN}` } });
  return ((await res.json()) as { data: ModelEvent[] }).data;
}
const admin = (p: TestPlatform, pathname: string, init: RequestInit = {}) =>
  fetch(p.baseUrl + pathname, { ...init, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) } });

describe('lifecycle: events and waits around an unload', function () {
  this.timeout(60_000);
  let repo: TempModelRepo | undefined;
  let p: TestPlatform | undefined;
  let worker: InferenceWorker | undefined;

  afterEach(async () => {
    await worker?.close();
    worker = undefined;
    await p?.close();
    p = undefined;
    repo?.remove();
    repo = undefined;
  });

  it('a version unloaded while no worker is live (nothing queued for it): once the workers are back and it is let go, the log says version_unloaded "unloaded"', async () => {
    repo = servedMlpRepo(['1', '2']);
    p = await startPlatform({ models: repo.root, worker: false, env: { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0.2' } });
    const platform = p;
    expect((await admin(platform, '/v1/models/mlp/versions/2/unload', { method: 'POST' })).status).to.equal(202);
    // The workers come back (a deploy): version 2's files are still there, it is draining, nothing is queued for it.
    worker = await createWorker(platform.config, silentLogger);
    await platform.gateway.catalog.refresh();
    await waitUntil(async () => {
      const m = await describeMlp(platform);
      return m.versions_detail.find((d) => d.version === '1')?.state === 'ready' && !m.versions_detail.some((d) => d.version === '2');
    }, 20_000, 'version 1 ready, version 2 let go');
    const seen = await waitUntil(async () => (await events(platform)).some((e) => e.type === 'version_unloaded' && e.data.version === '2' && e.data.state === 'unloaded'), 5_000, 'version_unloaded unloaded').catch(() => false);
    const types = (await events(platform)).map((e) => `${e.type}:${String(e.data.version)}:${String(e.data.state)}`);
    expect(seen, `events: ${types.join(', ')}`).to.equal(true);
  });

  it('jobs pinned to a version, waiting with Prefer: wait, when the version is unloaded a moment later: every one answers 200 succeeded, run by that version', async () => {
    repo = servedMlpRepo(['1', '2']);
    p = await startPlatform({ models: repo.root, env: { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0.2' } });
    const platform = p;
    await waitUntil(async () => (await describeMlp(platform)).versions_detail.filter((d) => d.state === 'ready').length === 2, 20_000, 'both ready');
    const submits = Array.from({ length: 40 }, (_, i) =>
      platform.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=20' }, body: JSON.stringify({ model: 'mlp', version: '2', input: { features: mlpFeatures(i) } }) }),
    );
    const unload = admin(platform, '/v1/models/mlp/versions/2/unload', { method: 'POST' });
    const answers = await Promise.all(submits.map(async (r) => {
      const res = await r;
      return { status: res.status, body: (await res.json()) as { status?: string; version?: string; code?: string } };
    }));
    expect((await unload).status).to.equal(202);
    expect(answers.filter((a) => a.status === 200).length, 'some were accepted before the drain').to.be.greaterThan(0);
    for (const a of answers) {
      // Accepted before the gateway saw the drain: it runs on version 2; after: 404 version_not_found. Never a 5xx, never another version.
      if (a.status === 404) expect(a.body.code).to.equal('version_not_found');
      else expect({ status: a.status, job: a.body.status, version: a.body.version }).to.deep.equal({ status: 200, job: 'succeeded', version: '2' });
    }
    await waitUntil(async () => (await events(platform)).some((e) => e.type === 'version_unloaded' && e.data.state === 'unloaded'), 20_000, 'version 2 let go');
  });
});
