/**
 * jobs.run({timeoutMs}) and `infer jobs submit --wait --timeout` name the
 * job they leave behind when it does not end in time: it was accepted and
 * goes on, and the caller must be able to cancel it or read its answer.
 *
 * run() asks the gateway to hold its submit (`Prefer: wait`) a little short
 * of the deadline: held to the deadline itself, the SDK's own timer (started
 * a moment later, with no network to cross) aborted the request first, and
 * the 202 carrying the id was never read.
 */
import { expect } from 'chai';
import { InferClient, InferTimeoutError } from '@infer/sdk';
import { runCliProcess } from './helpers/cli.js';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';

const features = Array.from({ length: 64 }, (_, i) => Math.cos(i));

describe('sdk: a jobs.run that times out names its job', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let client: InferClient;
  before(async () => {
    // No worker: every job stays queued.
    p = await startPlatform({ worker: false });
    client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
  });
  after(async () => {
    await p?.close();
  });

  it('jobs.run({timeoutMs: 1500}) on a job that stays queued says which job it gave up on', async () => {
    const key = `run-timeout-${Date.now()}`;
    const err = await client.jobs.run({ model: 'mlp', input: { features } }, { timeoutMs: 1500, idempotencyKey: key }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(InferTimeoutError);
    // The job was accepted and is queued: the same key replays it.
    const created = await client.jobs.create({ model: 'mlp', input: { features } }, { idempotencyKey: key });
    expect(created.status).to.equal('queued');
    expect((err as InferTimeoutError).jobId).to.equal(created.id);
    expect((err as Error).message).to.equal(`job ${created.id} did not end within 1500 ms`);
  });

  it('jobs.wait that times out names the job too (its long poll cut by the deadline, or the deadline between polls)', async () => {
    const queued = await client.jobs.create({ model: 'mlp', input: { features } });
    for (const timeoutMs of [300, 1200]) {
      const err = await client.jobs.wait(queued.id, { timeoutMs }).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(InferTimeoutError);
      expect((err as InferTimeoutError).jobId).to.equal(queued.id);
      expect((err as Error).message).to.equal(`job ${queued.id} did not end within ${timeoutMs} ms`);
    }
  });

  it('infer jobs submit --wait --timeout 1 prints the id of the job it leaves queued', async () => {
    const key = `cli-timeout-${Date.now()}`;
    const res = await runCliProcess(p.baseUrl, ['jobs', 'submit', '-m', 'mlp', '--input', JSON.stringify({ features }), '--idempotency-key', key, '--wait', '--timeout', '1']);
    expect(res.code, res.stderr).to.equal(1);
    const created = await client.jobs.create({ model: 'mlp', input: { features } }, { idempotencyKey: key });
    expect(created.status).to.equal('queued');
    expect(res.stderr).to.include(created.id);
  });
});
