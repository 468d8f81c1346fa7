import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import * as ort from 'onnxruntime-node';
import type { Job, ModelDescription } from '@infer/contract';
import { ElemType, encodeModel, initializer, node } from '../scripts/lib/onnx-builder.js';
import { DT, tensorInfo } from './helpers/int-graphs.js';
import { getJob, postJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * README "Batching follows the model": inputs that name their first
 * dimension differently may not share one axis. `a[N,2]` beside a lookup
 * table `table[V,2]` was batched (every first dimension dynamic), and the
 * worker stacked every job's table along V: each job's output summed the
 * other jobs' tables too (jobs of other tenants included), and the one-row
 * table the description showed refused the many-row tables the model takes.
 * Such a model is now served one job at a time; `"batched": true` in its
 * config.json says the names are one axis after all (PyTorch's list form of
 * dynamic_axes names each input's apart). And a value named `__proto__`,
 * which no JavaScript object can hold as a name, fails its version's load,
 * saying so, instead of loading and then failing every job.
 */

/** y[N,2] = a[N,2] + the column sums of table[V,2]: V is not the batch. */
function tableModel(): Uint8Array {
  return encodeModel({
    name: 'table',
    inputs: [tensorInfo('a', DT.FLOAT, ['N', 2]), tensorInfo('table', DT.FLOAT, ['V', 2])],
    outputs: [tensorInfo('y', DT.FLOAT, ['N', 2])],
    nodes: [node('ReduceSum', ['table', 'axes'], ['colsum'], { keepdims: 1 }), node('Add', ['a', 'colsum'], ['y'])],
    initializers: [initializer('axes', ElemType.INT64, [1], [0])],
  });
}

/** y = a + b, each input's batch axis under a name of its own (`a`, `b`: an author's, or one an exporter made up). */
function pairModel(a: string, b: string): Uint8Array {
  return encodeModel({
    name: 'pair',
    inputs: [tensorInfo('a', DT.FLOAT, [a, 2]), tensorInfo('b', DT.FLOAT, [b, 2])],
    outputs: [tensorInfo('y', DT.FLOAT, ['rows_y', 2])],
    nodes: [node('Add', ['a', 'b'], ['y'])],
  });
}

/** y = -x, its input (or output) named `name`. */
function negModel(input: string, output: string): Uint8Array {
  return encodeModel({ name: 'neg', inputs: [tensorInfo(input, DT.FLOAT, ['N', 2])], outputs: [tensorInfo(output, DT.FLOAT, ['N', 2])], nodes: [node('Neg', [input], [output])] });
}

/** y[2] = -x[2]: no dynamic dimension at all. */
function fixedModel(): Uint8Array {
  return encodeModel({ name: 'fixed', inputs: [tensorInfo('x', DT.FLOAT, [2])], outputs: [tensorInfo('y', DT.FLOAT, [2])], nodes: [node('Neg', ['x'], ['y'])] });
}

describe('model specs: inputs naming their first dimension differently, and names JavaScript objects cannot hold', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;

  before(async () => {
    repo = tempModelRepo({
      table: { onnx: tableModel(), config: { max_batch_size: 8, max_delay_ms: 20 } },
      pair: { onnx: pairModel('rows_a', 'rows_b'), config: { batched: true, max_delay_ms: 20 } },
      // Names exporters make up, one per input: torch.onnx.export's list form of dynamic_axes, tf2onnx, paddle2onnx.
      torch: { onnx: pairModel('a_dynamic_axes_1', 'b_dynamic_axes_1') },
      tf: { onnx: pairModel('unk__12', 'unk__13') },
      paddle: { onnx: pairModel('p2o.DynamicDimension.0', 'p2o.DynamicDimension.1') },
      authors: { onnx: pairModel('rows_a', 'rows_b') },
      proto: { onnx: negModel('x', 'y') },
      fixed: { onnx: fixedModel(), config: { batched: true } },
      asked: { onnx: negModel('x', 'y'), config: { batched: false } },
    });
    // Version 2 of `proto` names its input __proto__; version 3 its output.
    for (const [version, onnx] of [['2', negModel('__proto__', 'y')], ['3', negModel('x', '__proto__')]] as const) {
      mkdirSync(path.join(repo.root, 'proto', version));
      writeFileSync(path.join(repo.root, 'proto', version, 'model.onnx'), onnx);
    }
    p = await startPlatform({ models: repo.root, worker: false });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
  });

  const describeModel = async (name: string) => (await (await p.api(`/v1/models/${name}`)).json()) as ModelDescription;

  async function ended(ids: string[]): Promise<Job[]> {
    return Promise.all(
      ids.map((id) =>
        waitUntil(async () => {
          const j = await getJob(p, id);
          return j.status === 'succeeded' || j.status === 'failed' ? j : null;
        }, 20_000),
      ),
    );
  }

  it('a[N,2] beside table[V,2] is not batched: full shapes, and jobs queued together each get what their own run gives', async () => {
    const m = await describeModel('table');
    expect(m.max_batch_size).to.equal(0);
    expect(m.inputs.map((s) => s.shape)).to.deep.equal([
      [-1, 2],
      [-1, 2],
    ]);
    const inputs = [
      { a: [[1, 1]], table: [[10, 20]] },
      { a: [[2, 2]], table: [[100, 200], [1000, 2000]] },
    ];
    const ids: string[] = [];
    for (const input of inputs) ids.push((await postJob(p, { model: 'table', input })).job.id);
    await p.startWorker();
    const jobs = await ended(ids);
    const session = await ort.InferenceSession.create(tableModel());
    try {
      for (const [i, input] of inputs.entries()) {
        const alone = await session.run({
          a: new ort.Tensor('float32', Float32Array.from(input.a.flat()), [input.a.length, 2]),
          table: new ort.Tensor('float32', Float32Array.from(input.table.flat()), [input.table.length, 2]),
        });
        const y = Array.from(alone.y!.data as Float32Array);
        expect(jobs[i]!.output, `job ${i}`).to.deep.equal({ y: [y] });
        expect(jobs[i]!.metrics?.batch_size).to.equal(1);
      }
    } finally {
      await session.release();
    }
  });

  it('names exporters make up for each input count as unnamed: batched; an author\'s two names are not, unless "batched": true', async () => {
    for (const name of ['torch', 'tf', 'paddle']) {
      const m = await describeModel(name);
      expect(m.max_batch_size, name).to.equal(32);
      expect(m.inputs.map((s) => s.shape), name).to.deep.equal([[2], [2]]);
    }
    expect((await describeModel('authors')).max_batch_size).to.equal(0);
  });

  it('inputs whose one batch axis their author named apart are batched with "batched": true, each job getting its own sum', async () => {
    await p.closeWorker();
    const m = await describeModel('pair');
    expect(m.max_batch_size).to.equal(32);
    expect(m.inputs.map((s) => s.shape)).to.deep.equal([[2], [2]]);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await postJob(p, { model: 'pair', input: { a: [i, i], b: [10 * i, 100] } })).job.id);
    await p.startWorker();
    const jobs = await ended(ids);
    jobs.forEach((job, i) => expect(job.output, `job ${i}`).to.deep.equal({ y: [11 * i, i + 100] }));
    expect(Math.max(...jobs.map((j) => j.metrics?.batch_size ?? 0)), 'stacked').to.be.greaterThan(1);
  });

  it('"batched": true on a model with no dynamic first dimension fails its load, saying why; "batched": false serves one job at a time', async () => {
    const fixed = await p.api('/v1/models/fixed');
    expect(fixed.status, 'its only version failed').to.equal(404);
    const asked = await describeModel('asked');
    expect(asked.max_batch_size).to.equal(0);
    expect(asked.inputs[0]!.shape).to.deep.equal([-1, 2]);
  });

  it('a version with an input or an output named __proto__ is failed at load, naming it; the model\'s other version serves', async () => {
    await p.gateway.catalog.refresh();
    const m = await describeModel('proto');
    const detail = new Map(m.versions_detail.map((d) => [d.version, d]));
    expect(detail.get('2')?.state).to.equal('failed');
    expect(detail.get('2')?.error).to.match(/an input is named "__proto__"/);
    expect(detail.get('3')?.state).to.equal('failed');
    expect(detail.get('3')?.error).to.match(/an output is named "__proto__"/);
    const { res, job } = await postJob(p, { model: 'proto', input: { x: [1, -2] } }, { wait: 20 });
    expect(res.status).to.equal(200);
    expect(job.version).to.equal('1');
    expect(job.output).to.deep.equal({ y: [-1, 2] });
  });
});
