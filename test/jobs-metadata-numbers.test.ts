import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * docs/api.md, POST /v1/jobs `metadata`: numbers a double cannot hold as
 * sent are refused where the difference is a different number (`1e400`, an
 * integer past 2^53 − 1), and the rest come back as the double they parse to:
 * `1e-400` as 0, `-0` as 0, a fraction of more than 17 significant digits
 * rounded. Pinned here so that a change to either is a change to the docs.
 */
describe('jobs: metadata numbers and the doubles they come back as', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  const features = JSON.stringify(new Array(64).fill(0.25));
  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p.close();
  });

  const submit = (metadata: string) => p.api('/v1/jobs', { method: 'POST', body: `{"model":"mlp","input":{"features":${features}},"metadata":${metadata}}` });

  it('1e-400, -0 and a 23-digit fraction are taken and come back as their doubles', async () => {
    const res = await submit('{"tiny":1e-400,"negzero":-0,"long":0.12345678901234567890123}');
    const text = await res.text();
    expect(res.status, text).to.equal(202);
    const job = JSON.parse(text) as Job;
    expect(job.metadata).to.deep.equal({ tiny: 0, negzero: 0, long: 0.12345678901234568 });
    expect(text).to.include('"metadata":{"tiny":0,"negzero":0,"long":0.12345678901234568}');
  });

  it('1e400 and an integer past 2^53 − 1 are refused with 422', async () => {
    for (const metadata of ['{"huge":1e400}', '{"id":9007199254740993}']) {
      const res = await submit(metadata);
      const body = (await res.json()) as { code: string };
      expect(res.status, metadata).to.equal(422);
      expect(body.code).to.equal('invalid_input');
    }
  });
});
