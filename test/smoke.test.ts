import { expect } from 'chai';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

describe('smoke: submit and wait', () => {
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform();
  });
  after(async () => {
    await p.close();
  });

  it('runs an mlp job with Prefer: wait', async () => {
    const res = await p.api('/v1/jobs', {
      method: 'POST',
      headers: { prefer: 'wait=10' },
      body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } }),
    });
    expect(res.status).to.equal(200);
    const job = (await res.json()) as { status: string; output: { probabilities: number[] } };
    expect(job.status).to.equal('succeeded');
    expect(job.output.probabilities).to.have.length(4);
  });
});
