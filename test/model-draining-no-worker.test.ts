import { expect } from 'chai';
import type { Job, ModelDescription } from '@infer/contract';
import { getJob, postJob } from './helpers/jobs.js';
import { mlpFeatures } from './helpers/batches.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A draining version stays in `versions_detail` until the jobs already
 * queued for it have run, then it is gone. While no live worker holds the
 * version (the fleet down or restarting), its queued jobs are what keep it
 * listed: the operator must see the version whose jobs are waiting, not
 * have it vanish at the unload.
 */
const ADMIN = 'draining-admin-key';

describe('model versions: one unloaded while no worker is live, with jobs queued for it', function () {
  this.timeout(40_000);
  let p: TestPlatform | undefined;
  afterEach(async () => {
    await p?.close();
    p = undefined;
  });

  const stateOf = async (version: string) => ((await (await p!.api('/v1/models/mlp')).json()) as ModelDescription).versions_detail.find((d) => d.version === version)?.state;

  it('stays in versions_detail as draining until its queued jobs have run, then leaves it', async () => {
    p = await startPlatform({ worker: false, env: { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0.2' } });
    const jobs: Job[] = [];
    for (let i = 0; i < 2; i++) jobs.push((await postJob(p, { model: 'mlp', version: '1', input: { features: mlpFeatures(i) } })).job);
    const res = await fetch(`${p.baseUrl}/v1/models/mlp/versions/1/unload`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    expect(res.status, await res.clone().text()).to.equal(202);
    const answered = (await res.json()) as ModelDescription;
    expect(answered.versions_detail.find((d) => d.version === '1')).to.deep.equal({ version: '1', state: 'draining', workers_ready: 0 });
    expect(await Promise.all(jobs.map(async (j) => (await getJob(p!, j.id)).status))).to.deep.equal(['queued', 'queued']);
    // Looks later (a second each), still draining while they wait.
    await p.gateway.catalog.refresh();
    expect(await stateOf('1'), 'version 1 still has 2 jobs queued: it is draining, not gone').to.equal('draining');
    // They run once a worker is back; then the version leaves the list.
    await p.startWorker();
    await waitUntil(async () => (await Promise.all(jobs.map(async (j) => (await getJob(p!, j.id)).status))).every((s) => s === 'succeeded'), 15_000, 'the queued jobs to run');
    await waitUntil(async () => (await stateOf('1')) === undefined, 15_000, 'version 1 to leave versions_detail');
  });
});
