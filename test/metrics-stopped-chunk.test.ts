import { expect } from 'chai';
import type { InferenceSession } from 'onnxruntime-node';
import { mlpFeatures, submitBatch, waitForBatchEnd } from './helpers/batches.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { parse, value } from './helpers/prometheus.js';
import { elapse, waitUntil } from './helpers/wait.js';

/**
 * docs/operations.md, worker metrics: `infer_inference_exec_count_total` is
 * "ONNX Runtime runs", `infer_inference_count_total` "instances run, jobs
 * and bulk rows together", `infer_inference_duration_seconds` "one ONNX
 * Runtime run (`session.run`) of a micro-batch or bulk slice" and
 * `infer_batch_size` "instances per run". BulkWorker.process observes a
 * chunk's runs only when the chunk ran to its end: a chunk stopped because
 * its batch was canceled meanwhile (runChunk's `stopped`) returns before
 * `metrics.runs(result.runs)`, so the slices it did run through ONNX
 * Runtime are in none of these figures.
 */
describe('the runs of a bulk chunk stopped by its batch\'s cancel are counted', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let session: InferenceSession & { run: InferenceSession['run'] };

  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    if (session) delete (session as unknown as Record<string, unknown>).run;
    await p?.close();
  });

  const scrapeWorker = async () => parse(await (await fetch(`http://127.0.0.1:${p.worker!.metricsPort}/metrics`)).text());

  it('counts the slices that ran before the chunk stopped', async () => {
    const MLP2 = { model: 'mlp', version: '2' };
    // 3 slices of 64 rows (mlp's max_batch_size), one chunk.
    const items = Array.from({ length: 192 }, (_, i) => ({ custom_id: `r${i}`, input: { features: mlpFeatures(i) } }));
    const batch = await submitBatch(p, { json: { model: 'mlp', version: 2, items } });

    // The first slice's run: the client cancels the batch while it runs (a real race, made certain), and the run
    // lasts past the bulk worker's cancel check interval (200 ms), so the next slice looks and the chunk stops.
    const mv = p.gateway.models.find('mlp', '2')!;
    session = mv.session as typeof session;
    const original = session.run.bind(session);
    let runs = 0;
    session.run = (async (...args: Parameters<InferenceSession['run']>) => {
      if (runs++ === 0) {
        expect((await p.api(`/v1/batches/${batch.id}/cancel`, { method: 'POST' })).status).to.equal(200);
        await elapse(300, "the bulk worker looks for its batch's cancel only every 200 ms");
      }
      return (original as (...a: unknown[]) => ReturnType<InferenceSession["run"]>)(...args);
    }) as InferenceSession['run'];

    await p.startWorker();
    expect((await waitForBatchEnd(p, batch.id)).status).to.equal('canceled');
    // The chunk ran one slice, then stopped: the runs ONNX Runtime made.
    await waitUntil(() => runs >= 1, 10_000, 'the first slice to run');
    const s = await waitUntil(
      async () => {
        const samples = await scrapeWorker();
        return value(samples, 'infer_inference_exec_count_total', MLP2) >= 1 ? samples : null;
      },
      5_000,
      'the slices run before the stop to be counted',
    ).catch(async (err: Error) => {
      const samples = await scrapeWorker();
      throw new Error(`${err.message}: session.run was called ${runs} time(s); infer_inference_exec_count_total=${value(samples, 'infer_inference_exec_count_total', MLP2)}`);
    });
    expect(value(s, 'infer_inference_exec_count_total', MLP2)).to.equal(runs);
    expect(value(s, 'infer_inference_count_total', MLP2)).to.equal(64 * runs);
    expect(value(s, 'infer_batch_size_count', MLP2)).to.equal(runs);
    expect(value(s, 'infer_inference_duration_seconds_count', MLP2)).to.equal(runs);
  });
});
