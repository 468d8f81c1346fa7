import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { ElemType, encodeModel, initializer, node, valueInfo } from '../scripts/lib/onnx-builder.js';
import { runCliProcess } from './helpers/cli.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';
import { InferClient, type BatchResultLine } from '@infer/sdk';

/** negative[N,2] = (1 / x < 0): true exactly for negative values and -0, so the sign of a zero shows in the output. */
function negativeModel(): Uint8Array {
  return encodeModel({
    name: 'negative',
    inputs: [valueInfo('x', ElemType.FLOAT, ['batch', 2])],
    outputs: [valueInfo('negative', ElemType.BOOL, ['batch', 2])],
    initializers: [initializer('one', ElemType.FLOAT, [], [1]), initializer('zero', ElemType.FLOAT, [], [0])],
    nodes: [node('Div', ['one', 'x'], ['inv']), node('Less', ['inv', 'zero'], ['negative'])],
  });
}

/**
 * `infer jobs submit --input <json>` / `--input-file` (docs/cli.md) sends "the
 * input object ... in any of the three tensor forms of the contract". JSON
 * has -0, the gateway reads it as -0 (JSON.parse, the line scanner) and
 * ONNX Runtime tells it from 0; the CLI must send the tensor the user wrote,
 * so its job's output is the one POST /v1/jobs gives for the same JSON.
 */
describe('sdk: the CLI and the SDK send -0 as -0', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let dir: string;
  before(async () => {
    repo = tempModelRepo({ negative: { onnx: negativeModel(), config: { max_batch_size: 4, max_delay_ms: 2 } } });
    p = await startPlatform({ models: repo.root });
    dir = mkdtempSync(path.join(os.tmpdir(), 'infer-cli-negzero-'));
  });
  after(async () => {
    await p?.close();
    repo?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('jobs submit --input and --input-file give the output POST /v1/jobs gives for the same JSON', async () => {
    const text = '{"x": [-0, 0]}';
    const s = await ort.InferenceSession.create(negativeModel());
    const direct = await s.run({ x: new ort.Tensor('float32', Float32Array.of(-0, 0), [1, 2]) });
    await s.release();
    expect(Array.from(direct.negative!.data as Uint8Array, (v) => v !== 0)).to.deep.equal([true, false]);

    const viaApi = await p.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=20' }, body: `{"model": "negative", "input": ${text}}` });
    const apiJob = (await viaApi.json()) as { status: string; output: unknown };
    expect(apiJob.status).to.equal('succeeded');
    expect(apiJob.output).to.deep.equal({ negative: [true, false] });

    const file = path.join(dir, 'input.json');
    writeFileSync(file, text);
    for (const args of [['--input', text], ['--input-file', file]]) {
      const r = await runCliProcess(p.baseUrl, ['jobs', 'submit', '--model', 'negative', ...args, '--wait', '--timeout', '20']);
      expect(r.code, r.stderr).to.equal(0);
      const job = JSON.parse(r.stdout) as { status: string; output: unknown };
      expect(job.status).to.equal('succeeded');
      expect(job.output, `infer jobs submit ${args[0]}`).to.deep.equal(apiJob.output);
    }
  });

  it('the SDK sends a -0 in a nested array or in data as -0 (JSON carries it: "-0")', async () => {
    const client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
    for (const x of [[-0, 0], { datatype: 'FP32' as const, shape: [2], data: [-0, 0] }]) {
      const job = await client.jobs.run({ model: 'negative', input: { x } }, { timeoutMs: 20_000 });
      expect(job.status).to.equal('succeeded');
      expect(job.output, JSON.stringify(x)).to.deep.equal({ negative: [true, false] });
    }
  });

  it('batches.upload sends an item object as the line its text would be: {x: [-0, 0]} gives what the NDJSON text and batches.create give', async () => {
    const client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
    const uploaded = await client.batches.upload({ model: 'negative' }, [
      '{"custom_id":"text","input":{"x":[-0,0]}}\n',
      { custom_id: 'object', input: { x: [-0, 0] } },
    ]);
    const created = await client.batches.create({ model: 'negative', items: [{ custom_id: 'json', input: { x: [-0, 0] } }] });
    const outputs: Record<string, unknown> = {};
    for (const b of [uploaded, created]) {
      await client.batches.wait(b.id, { pollMs: 50, timeoutMs: 20_000 });
      for await (const line of client.batches.results(b.id) as AsyncGenerator<BatchResultLine>) {
        expect(line.status, JSON.stringify(line)).to.equal('succeeded');
        outputs[line.custom_id!] = line.output;
      }
    }
    expect(outputs).to.deep.equal({ text: { negative: [true, false] }, json: { negative: [true, false] }, object: { negative: [true, false] } });
  });
});
