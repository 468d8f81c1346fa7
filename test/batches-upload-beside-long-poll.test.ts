import { expect } from 'chai';
import type { Batch } from '@infer/contract';
import { b64Fp32, mlpFeatures, toNdjson, uploadNdjson } from './helpers/batches.js';
import { postJob } from './helpers/jobs.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * Interplay of an upload with interactive requests in the same gateway. An
 * upload steps aside while the gateway *serves* interactive requests, so a
 * parse does not hold up a job's auth, enqueue and answer (docs/batches.md,
 * "Interactive first"). A long poll (`Prefer: wait`) that is parked waiting
 * for its job to end uses nothing an upload could hold up; it must not
 * throttle every upload to one body piece a second for up to MAX_WAIT (60 s).
 * With clients that keep a long poll open (the usual way to wait for a job),
 * an upload of a few tens of MB would not arrive within the 5-minute request
 * limit at that pace and be cut with 408.
 */
describe('batches: an NDJSON upload while a long poll is parked in the gateway', function () {
  this.timeout(90_000);
  let p: TestPlatform;
  before(async () => {
    // No worker: the polled job stays queued, so its long poll stays parked for its whole wait.
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p?.close();
  });

  it('reads the upload at full speed: it is accepted long before the parked long poll ends', async () => {
    const rows = 8000; // ~3.4 MB of NDJSON: about a second to read when nothing else is in flight
    const body = toNdjson(Array.from({ length: rows }, (_, i) => ({ custom_id: `p${i}`, input: { features: b64Fp32(mlpFeatures(i)) } })));
    const { job } = await postJob(p, { model: 'mlp', input: { features: mlpFeatures(0) } });
    const poll = p.api(`/v1/jobs/${job.id}`, { headers: { prefer: 'wait=20' } }).then(async (res) => {
      await res.text();
      return 'long poll ended' as const;
    });
    await waitUntil(() => p.gateway.waiters.size > 0, 5000, 'the long poll to be parked');

    const upload = uploadNdjson(p, body).then(async (res) => {
      expect(res.status, await res.clone().text()).to.equal(202);
      expect(((await res.json()) as Batch).request_counts.total).to.equal(rows);
      return 'upload accepted' as const;
    });
    const first = await Promise.race([upload, poll]);
    // Let the long poll go, whatever happened.
    await p.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' });
    await Promise.all([upload, poll]);
    expect(first, 'which answered first').to.equal('upload accepted');
  });
});
