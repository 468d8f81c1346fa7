import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { getJob, postJob } from './helpers/jobs.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

const ADMIN = 'drain-admin-key';
const features = (seed: number) => Array.from({ length: 64 }, (_, i) => ((seed * 31 + i) % 17) / 17);

/**
 * docs/api.md: a draining version's "workers finish the jobs it has". Also
 * when no worker served it at the unload, and one starts during the drain (a
 * deploy, a restart): the jobs queued for it were accepted with 202 and run.
 */
describe('queued jobs of a version being drained', function () {
  this.timeout(40_000);
  let p: TestPlatform | undefined;
  afterEach(async () => {
    await p?.close();
    p = undefined;
  });

  it('a worker that starts while the version drains still runs the jobs queued for it (they were accepted with 202)', async () => {
    p = await startPlatform({ worker: false, env: { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0.2' } });
    const jobs: Job[] = [];
    for (let i = 0; i < 3; i++) jobs.push((await postJob(p, { model: 'mlp', version: '1', input: { features: features(i) } })).job);
    expect(jobs.map((j) => j.status)).to.deep.equal(['queued', 'queued', 'queued']);
    const res = await fetch(`${p.baseUrl}/v1/models/mlp/versions/1/unload`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    expect(res.status, await res.clone().text()).to.equal(202);
    // The workers come back (a deploy, a restart): the version is draining, its queue still holds 3 jobs.
    await p.startWorker();
    let last: string[] = [];
    try {
      await waitUntil(
        async () => {
          last = await Promise.all(jobs.map(async (j) => (await getJob(p!, j.id)).status));
          return last.every((s) => s === 'succeeded');
        },
        15_000,
        'the queued jobs of the draining version to run',
      );
    } catch (err) {
      expect(last, `job statuses 15 s after a worker started: ${(err as Error).message}`).to.deep.equal(['succeeded', 'succeeded', 'succeeded']);
    }
  });
});
