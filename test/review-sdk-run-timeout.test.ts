/**
 * Review: jobs.run({timeoutMs}) and `infer jobs submit --wait --timeout`
 * lose the id of the job they created.
 *
 * run() sends the POST with `Prefer: wait=<all that is left of timeoutMs>`
 * and a request deadline of that same remaining time: the gateway holds the
 * answer to just that moment, and the SDK's own timer (started slightly
 * later, answered slightly sooner) aborts the request first. The job was
 * accepted and queued ("the job goes on", docs/sdk.md), but the caller gets
 * `InferTimeoutError("the job did not end within N ms")` with no job id: it
 * cannot cancel the job, nor read its answer later. Whenever timeoutMs is at
 * most 60 s (the create's whole wait), this is the only timeout a job that
 * does not end in time ever gets.
 */
import { expect } from 'chai';
import { InferClient, InferTimeoutError } from '@infer/sdk';
import { runCliProcess } from './helpers/cli.js';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';

const features = Array.from({ length: 64 }, (_, i) => Math.cos(i));

describe('review sdk: jobs.run timeout keeps the job id', function () {
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
    const key = `review-run-timeout-${Date.now()}`;
    const err = await client.jobs.run({ model: 'mlp', input: { features } }, { timeoutMs: 1500, idempotencyKey: key }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(InferTimeoutError);
    // The job was accepted and is queued: the same key replays it.
    const created = await client.jobs.create({ model: 'mlp', input: { features } }, { idempotencyKey: key });
    expect(created.status).to.equal('queued');
    // ...but the error never said which job it was.
    expect((err as Error).message, (err as Error).message).to.include(created.id);
  });

  it('infer jobs submit --wait --timeout 1 prints the id of the job it leaves queued', async () => {
    const key = `review-cli-timeout-${Date.now()}`;
    const res = await runCliProcess(p.baseUrl, ['jobs', 'submit', '-m', 'mlp', '--input', JSON.stringify({ features }), '--idempotency-key', key, '--wait', '--timeout', '1']);
    expect(res.code, res.stderr).to.equal(1);
    const created = await client.jobs.create({ model: 'mlp', input: { features } }, { idempotencyKey: key });
    expect(created.status).to.equal('queued');
    expect(res.stdout + res.stderr, res.stderr).to.include(created.id);
  });
});
