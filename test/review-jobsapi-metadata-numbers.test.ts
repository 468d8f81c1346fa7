import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * docs/api.md, POST /v1/jobs `metadata`: "echoed back unchanged (so its numbers must fit a double:
 * `1e400` is a 422, and so is an integer past 2^53 − 1 below 10^21, whose digits a double would round)".
 *
 * 1e-400 does not fit a double either: JSON.parse makes it 0, and a non-zero number the client sent
 * comes back as `0`, silently, where its mirror image 1e400 is refused.
 */
describe('review jobs API: metadata numbers that a double cannot hold', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  const features = JSON.stringify(new Array(64).fill(0.25));
  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p.close();
  });

  it('a non-zero number that underflows a double (1e-400) is refused with 422, or comes back non-zero, never as 0', async () => {
    const res = await p.api('/v1/jobs', { method: 'POST', body: `{"model":"mlp","input":{"features":${features}},"metadata":{"tiny":1e-400}}` });
    const text = await res.text();
    if (res.status === 422) return;
    expect(res.status, text).to.equal(202);
    const job = JSON.parse(text) as Job;
    expect((job.metadata as { tiny: number }).tiny, 'metadata.tiny: sent 1e-400, echoed as 0').to.not.equal(0);
  });
});
