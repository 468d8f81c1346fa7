import { expect } from 'chai';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { postJob } from './helpers/jobs.js';
import { submitBatch, waitForBatchEnd } from './helpers/batches.js';
import { scalarIntModel } from './helpers/int-graphs.js';

/**
 * a batched model whose instances are scalars
 * (x[N] → y[N], flag[N]): GET /v1/models shows `shape: []`; jobs in any
 * form stacked into one run each get bare values back (INT64 with all its
 * digits, wrapping as ONNX Runtime computes; BOOL as booleans); a batch's
 * result lines print the same text.
 */
describe('batched scalar instances (INT64 and BOOL outputs)', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;

  before(async () => {
    repo = tempModelRepo({ s: { onnx: scalarIntModel(), config: { max_batch_size: 8, max_delay_ms: 5 } } });
    p = await startPlatform({ models: repo.root, worker: false });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
  });

  const b64 = (v: bigint) => ({ datatype: 'INT64', shape: [], b64: Buffer.from(BigInt64Array.from([v]).buffer).toString('base64') });
  const inputs: unknown[] = [3, -5, 0, { datatype: 'INT64', shape: [], data: [7] }, b64(-(2n ** 62n)), b64(2n ** 62n + 1n)];
  const expected = ['{"y":6,"flag":true}', '{"y":-10,"flag":false}', '{"y":0,"flag":false}', '{"y":14,"flag":true}', '{"y":-9223372036854775808,"flag":false}', '{"y":-9223372036854775806,"flag":true}'];

  it('GET /v1/models describes the instances as scalars, batched', async () => {
    const m = (await (await p.api('/v1/models/s')).json()) as Record<string, unknown>;
    expect({ inputs: m.inputs, outputs: m.outputs, max_batch_size: m.max_batch_size }).to.deep.equal({
      inputs: [{ name: 'x', datatype: 'INT64', shape: [] }],
      outputs: [
        { name: 'y', datatype: 'INT64', shape: [] },
        { name: 'flag', datatype: 'BOOL', shape: [] },
      ],
      max_batch_size: 8,
    });
  });

  it('jobs stacked into one run each get their own bare values, 64-bit digits exact', async () => {
    const ids: string[] = [];
    for (const x of inputs) ids.push((await postJob(p, { model: 's', input: { x } })).job.id);
    await p.startWorker();
    for (const [i, id] of ids.entries()) {
      const res = await p.api(`/v1/jobs/${id}`, { headers: { prefer: 'wait=20' } });
      const text = await res.text();
      expect(text, `job ${i}`).to.include(`"status":"succeeded"`);
      expect(/"output":(\{[^}]*\})/.exec(text)?.[1], `job ${i}`).to.equal(expected[i]);
      expect(/"batch_size":(\d+)/.exec(text)?.[1], `job ${i} ran stacked`).to.not.equal('1');
    }
  });

  it('a batch of the same items prints the same outputs in its result lines', async () => {
    await p.startWorker();
    const batch = await submitBatch(p, { json: { model: 's', items: inputs.map((x, i) => ({ custom_id: `c${i}`, input: { x } })) } });
    await waitForBatchEnd(p, batch.id);
    const text = await (await p.api(`/v1/batches/${batch.id}/results`)).text();
    const lines = text.split('\n').filter(Boolean);
    expect(lines).to.have.length(inputs.length);
    lines.forEach((line, i) => {
      expect(line, `line ${i}`).to.include(`"status":"succeeded"`);
      expect(/"output":(\{[^}]*\})/.exec(line)?.[1], `line ${i}`).to.equal(expected[i]);
    });
  });
});
