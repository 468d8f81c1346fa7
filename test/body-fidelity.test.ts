import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { expectProblem, pollJob, QueueProbe } from './helpers/jobs.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';

/**
 * POST /v1/jobs reads the body as JSON.parse reads it, and refuses what
 * docs/api.md says it refuses, with nothing enqueued: a body that is not
 * UTF-8; and a `"__proto__"` member, which JSON.parse keeps as an ordinary
 * own member, is neither dropped from metadata nor let through as an input.
 */
describe('POST /v1/jobs reads the body exactly', () => {
  let p: TestPlatform;
  let probe: QueueProbe;
  const features = new Array(64).fill(0.5);

  before(async () => {
    p = await startPlatform({ worker: false });
    probe = new QueueProbe(TEST_REDIS_URL, p.prefix, [['mlp', '1'], ['mlp', '2']]);
  });
  after(async () => {
    await probe.close();
    await p.close();
  });

  const post = (body: string | Buffer) => p.api('/v1/jobs', { method: 'POST', body });

  it('a body that is not UTF-8 is 400 invalid_json (docs/api.md error table, OpenAPI 400), and nothing is enqueued', async () => {
    // Valid JSON structure, but 0xff 0xfe inside a metadata string: not UTF-8.
    const body = Buffer.concat([
      Buffer.from(`{"model":"mlp","input":{"features":${JSON.stringify(features)}},"metadata":{"note":"`),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('"}}'),
    ]);
    const before = await probe.snapshot();
    await expectProblem(await post(body), 400, 'invalid_json');
    await probe.expectNothingNew(before);
  });

  it('metadata is echoed back unchanged, a "__proto__" member included (JSON.parse reads it as an own member)', async () => {
    const text = `{"model":"mlp","input":{"features":${JSON.stringify(features)}},"metadata":{"__proto__":{"tag":"x"},"b":2}}`;
    const sent = (JSON.parse(text) as { metadata: Record<string, unknown> }).metadata;
    expect(Object.keys(sent)).to.deep.equal(['__proto__', 'b']);
    const res = await post(text);
    expect(res.status).to.equal(202);
    const job = (await res.json()) as Job;
    expect(Object.keys(job.metadata ?? {}), 'metadata members echoed').to.deep.equal(['__proto__', 'b']);
    // And in the ended job: through the envelope, the worker and the stored record.
    await p.startWorker();
    const ended = await pollJob(p, job.id, 10_000);
    expect(ended.status).to.equal('succeeded');
    expect(JSON.stringify(ended.metadata)).to.equal('{"__proto__":{"tag":"x"},"b":2}');
  });

  it('an unknown input named "__proto__" is 422 invalid_input like any unknown input name, and nothing is enqueued', async () => {
    const before = await probe.snapshot();
    // Control: any other unknown name is refused.
    await expectProblem(await post(`{"model":"mlp","input":{"features":${JSON.stringify(features)},"extra":[1]}}`), 422, 'invalid_input');
    const problem = await expectProblem(await post(`{"model":"mlp","input":{"features":${JSON.stringify(features)},"__proto__":[1]}}`), 422, 'invalid_input');
    expect(problem.detail).to.include('__proto__');
    await probe.expectNothingNew(before);
  });
});
