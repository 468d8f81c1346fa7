import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { expectProblem, pollJob, postJob, runJob } from './helpers/jobs.js';
import { int32DivModel } from './helpers/int-graphs.js';

/**
 * What holds on the path a clean ONNX Runtime error takes :
 * an INT32 division by zero passes the gateway (0 is an INT32) and makes
 * ONNX Runtime throw; in a micro-batch with good jobs it fails alone,
 * `inference_failed`, once, and the worker keeps serving. INT32 bounds are
 * taken exactly, and one past them is a 422. (INT32_MIN / -1, which traps
 * instead of throwing, is worker-crash-on-input.test.ts.)
 */
describe('INT32 inputs ONNX Runtime refuses cleanly, in a micro-batch of good ones', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;

  before(async () => {
    repo = tempModelRepo({ idiv: { onnx: int32DivModel(), config: { max_batch_size: 16, max_delay_ms: 5 } } });
    p = await startPlatform({ models: repo.root, worker: false });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
  });

  const div = (a: number, b: number) => ({ model: 'idiv', input: { a: [a], b: [b] } });

  it('a division by zero fails alone (inference_failed, ONNX Runtime\'s message), the jobs taken with it get their own quotients, and the worker serves on', async () => {
    const pairs: Array<[number, number]> = [
      [7, 2],
      [-9, 4],
      [5, 0],
      [2147483647, -1],
      [-2147483648, 1],
      [100, 7],
      [1, 0],
      [-2147483647, -1],
    ];
    // Queued before the worker starts: one take, one micro-batch of 8.
    const submitted = await Promise.all(pairs.map(([a, b]) => postJob(p, div(a, b))));
    await p.startWorker();
    const ended: Job[] = await Promise.all(submitted.map((s) => pollJob(p, s.job.id, 20_000)));
    ended.forEach((j, i) => {
      const [a, b] = pairs[i]!;
      if (b === 0) {
        expect(j.status, `job ${i}`).to.equal('failed');
        expect(j.error!.code).to.equal('inference_failed');
        expect(j.error!.message).to.match(/^ONNX Runtime failed: .*division by zero/i);
        expect(j.output).to.equal(null);
      } else {
        expect({ i, status: j.status, error: j.error }).to.deep.equal({ i, status: 'succeeded', error: null });
        // ONNX integer Div truncates toward zero.
        expect(j.output, `job ${i}`).to.deep.equal({ y: [Math.trunc(a / b)] });
      }
    });
    // The failed job's end is final and read the same again.
    const again = await pollJob(p, submitted[2]!.job.id);
    expect({ status: again.status, error: again.error, completed_at: again.completed_at }).to.deep.equal({ status: ended[2]!.status, error: ended[2]!.error, completed_at: ended[2]!.completed_at });
    // The worker is alive and serving.
    const later = await runJob(p, div(9, 3));
    expect(later.output).to.deep.equal({ y: [3] });
  });

  it('INT32 values one past the range are 422 at the gateway in every JSON form', async () => {
    for (const bad of [2147483648, -2147483649, 1.5]) {
      await expectProblem(await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify(div(bad, 1)) }), 422, 'invalid_input');
      await expectProblem(
        await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'idiv', input: { a: { datatype: 'INT32', shape: [1], data: [bad] }, b: [1] } }) }),
        422,
        'invalid_input',
      );
    }
  });
});
