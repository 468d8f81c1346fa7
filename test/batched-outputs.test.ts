import { expect } from 'chai';
import * as ort from 'onnxruntime-node';
import { ElemType, encodeModel, node, valueInfo } from '../scripts/lib/onnx-builder.js';
import { readResults, submitBatch, waitForBatchEnd } from './helpers/batches.js';
import { getJob, postJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * A model that is batched by the rule (every input and output has a dynamic
 * first dimension) but whose output's first dimension is not the batch: the
 * positions of the non-zero values (NonZero, transposed), one row per
 * non-zero value, as a detector's boxes [N, 4] are. Split by instance, a
 * run's output would hand a job part of its own rows or another's. So every
 * batched run checks that each output has a row per instance; a run that
 * does not fails (its instances are then run alone, and a lone instance
 * whose output still has another number of rows fails with a message that
 * says what to do), and `"max_batch_size": 0` serves such a model one job at
 * a time, with its outputs whole.
 *
 * (The check counts rows: a run whose row count happens to equal its
 * instances cannot be told apart from a batched output. The model's
 * exporter has to say which it is; docs/api.md "The Model object".)
 */

function nonZeroModel(): Uint8Array {
  return encodeModel({
    name: 'nonzero_rows',
    inputs: [valueInfo('x', ElemType.FLOAT, ['batch', 3])],
    outputs: [valueInfo('where', ElemType.INT64, ['n', 2])],
    nodes: [node('NonZero', ['x'], ['nz']), node('Transpose', ['nz'], ['where'])],
  });
}

describe('batched outputs: a model whose output is not batch-major', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let session: ort.InferenceSession;

  before(async () => {
    const model = nonZeroModel();
    repo = tempModelRepo({
      nz: { onnx: model, config: { max_batch_size: 8, max_delay_ms: 50 } },
      'nz-whole': { onnx: model, config: { max_batch_size: 0 } },
    });
    p = await startPlatform({ models: repo.root, worker: false });
    session = await ort.InferenceSession.create(model);
  });
  after(async () => {
    await session?.release();
    await p?.close();
    repo?.remove();
  });

  /** ONNX Runtime's `where` for these rows run together, as nested arrays. */
  const direct = async (rows: number[][]): Promise<number[][]> => {
    const r = await session.run({ x: new ort.Tensor('float32', Float32Array.from(rows.flat()), [rows.length, 3]) });
    const flat = Array.from(r.where!.data as BigInt64Array, Number);
    return Array.from({ length: r.where!.dims[0]! }, (_, i) => flat.slice(i * 2, i * 2 + 2));
  };

  it('a lone job whose output has another number of rows fails and says what to do; none is a partial success or a 500', async () => {
    await p.startWorker();
    expect(((await (await p.api('/v1/models/nz')).json()) as { max_batch_size: number }).max_batch_size).to.equal(8);
    // Two non-zero values: two rows for one instance. None: zero rows.
    for (const x of [[1, 0, 2], [0, 0, 0]]) {
      const { res, job } = await postJob(p, { model: 'nz', input: { x } }, { wait: 20 });
      expect(res.status).to.equal(200);
      expect(job.status, JSON.stringify(x)).to.equal('failed');
      expect(job.error!.code).to.equal('inference_failed');
      expect(job.error!.message).to.match(/output "where" .* has [02] rows for a run of 1 instance: its first dimension is not the batch .*"max_batch_size": 0/);
      expect((await getJob(p, job.id)).status).to.equal('failed');
    }
  });

  it("jobs stacked into one run get none of each other's rows: a run whose rows do not match its instances fails, down to each job alone", async () => {
    // Two non-zero values each: no group of them has a row per instance.
    const xs = [[1, 0, 2], [3, 4, 0], [0, 5, 6], [7, 0, 8]];
    const submitted = await Promise.all(xs.map((x) => postJob(p, { model: 'nz', input: { x } })));
    for (const { job } of submitted) {
      const ended = await waitForJob(p, job.id);
      expect(ended.status).to.equal('failed');
      expect(ended.error!.message).to.match(/first dimension is not the batch/);
    }
    // A batch's rows likewise: every line failed, none holds a row of another.
    const batch = await submitBatch(p, { ndjson: xs.map((x, i) => JSON.stringify({ custom_id: `r${i}`, input: { x } })).join('\n'), query: 'model=nz' });
    await waitForBatchEnd(p, batch.id);
    const lines = await readResults(p, batch.id);
    expect(lines.map((l) => [l.custom_id, l.status, l.error?.code])).to.deep.equal(xs.map((_, i) => [`r${i}`, 'failed', 'inference_failed']));
  });

  it('with "max_batch_size": 0 the model runs one job at a time on its full shapes, and every output comes back whole', async () => {
    const info = (await (await p.api('/v1/models/nz-whole')).json()) as { max_batch_size: number; inputs: Array<{ shape: number[] }>; outputs: Array<{ shape: number[] }> };
    expect(info.max_batch_size).to.equal(0);
    expect(info.inputs[0]!.shape).to.deep.equal([-1, 3]);
    expect(info.outputs[0]!.shape).to.deep.equal([-1, 2]);
    for (const rows of [[[1, 0, 2]], [[0, 0, 0]], [[1, 0, 2], [0, 5, 0]]]) {
      const { job } = await postJob(p, { model: 'nz-whole', input: { x: rows } }, { wait: 20 });
      expect(job.status, JSON.stringify(rows)).to.equal('succeeded');
      expect(job.output!.where).to.deep.equal(await direct(rows));
    }
    const xs = [[[1, 0, 2]], [[0, 5, 0]], [[0, 0, 0]], [[0, 0, 7]]];
    const batch = await submitBatch(p, { ndjson: xs.map((x, i) => JSON.stringify({ custom_id: `r${i}`, input: { x } })).join('\n'), query: 'model=nz-whole' });
    await waitForBatchEnd(p, batch.id);
    const lines = await readResults(p, batch.id);
    for (const [i, line] of lines.entries()) {
      expect(line.status).to.equal('succeeded');
      expect(line.output!.where).to.deep.equal(await direct(xs[i]!));
    }
  });
});

async function waitForJob(p: TestPlatform, id: string) {
  const res = await p.api(`/v1/jobs/${id}`, { headers: { prefer: 'wait=20' } });
  expect(res.status).to.equal(200);
  return (await res.json()) as Awaited<ReturnType<typeof getJob>>;
}
