import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { seededFloats } from './helpers/ort-reference.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * The same Idempotency-Key twice in one burst with Prefer: wait, beside
 * other jobs: the two requests may land in one envelope, yet they are one
 * job (one answer replayed), and the others keep their own.
 */
describe('Idempotency-Key reused inside one burst', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform();
  });
  after(async () => {
    await p?.close();
  });

  it('both answers are the one job with its own output; the other jobs keep theirs', async () => {
    const body = (seed: number) => JSON.stringify({ model: 'mlp', version: '2', input: { features: Array.from(seededFloats(64, seed)) } });
    const reqs = Array.from({ length: 6 }, (_, i) =>
      p.api('/v1/jobs', { method: 'POST', body: body(i < 2 ? 1 : i), headers: { prefer: 'wait=10', ...(i < 2 ? { 'idempotency-key': 'same-key' } : {}) } }).then(async (r) => ({ status: r.status, replayed: r.headers.get('idempotent-replayed'), job: (await r.json()) as Job })),
    );
    const out = await Promise.all(reqs);
    expect(out.map((o) => o.status)).to.deep.equal([200, 200, 200, 200, 200, 200]);
    expect(out[0]!.job.id).to.equal(out[1]!.job.id);
    expect([out[0]!.replayed, out[1]!.replayed].filter(Boolean)).to.deep.equal(['true']);
    expect(out[0]!.job.output).to.deep.equal(out[1]!.job.output);
    expect(new Set(out.map((o) => o.job.id)).size).to.equal(5);
    for (const o of out) expect(o.job.status).to.equal('succeeded');
  });
});
