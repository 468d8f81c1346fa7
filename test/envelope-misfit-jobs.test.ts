import { expect } from 'chai';
import { silentLogger } from '@infer/logger';
import { ModelRepository } from '@infer/models';
import { Queue } from 'bullmq';
import { interactiveQueue, type Job } from '@infer/contract';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { ElemType, encodeModel, node, valueInfo } from '../scripts/lib/onnx-builder.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { OTHER_TENANT_KEY, TEST_KEY, startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * An envelope holds the jobs one gateway accepted together for a model
 * version, whatever their tenants. When the worker's copy of the version
 * differs from the gateway's (a model.onnx replaced in place, a worker on
 * another disk), some jobs' inputs may not fit it. Every job of the
 * envelope failed then, with one message naming the first job that did not
 * fit: another tenant's job id in this tenant's error (docs/api.md
 * "Tenants": ids leak nothing). Now each job that does not fit fails alone,
 * `invalid_input`, with its own input's shape, and the others run.
 */
function identity(width: number | 'n'): Uint8Array {
  return encodeModel({
    name: 'ident',
    inputs: [valueInfo('x', ElemType.FLOAT, ['batch', width])],
    outputs: [valueInfo('y', ElemType.FLOAT, ['batch', width])],
    nodes: [node('Identity', ['x'], ['y'])],
  });
}

describe('an envelope whose jobs do not all fit the worker\'s copy of the model', function () {
  this.timeout(90_000);
  let gatewayRepo: TempModelRepo;
  let workerRepo: TempModelRepo;
  let workerModels: ModelRepository | undefined;
  let worker: InferenceWorker | undefined;
  let p: TestPlatform;

  before(async () => {
    gatewayRepo = tempModelRepo({ ident: { onnx: identity('n') } });
    workerRepo = tempModelRepo({ ident: { onnx: identity(4) } });
    p = await startPlatform({ models: gatewayRepo.root, worker: false, env: { MODEL_POLL_SECONDS: '0' } });
  });
  after(async () => {
    await worker?.close();
    await workerModels?.close();
    await p?.close();
    gatewayRepo?.remove();
    workerRepo?.remove();
  });

  it("each job that does not fit fails alone, naming only its own input; the others succeed; no error names another tenant's job", async () => {
    // Interleaved, concurrent submits from both tenants while no worker runs: the gateway puts the
    // jobs of one event-loop turn into one envelope.
    // Both tenants send inputs of 4 values (which the worker's copy takes) and of 3 (which it does not).
    const keys = Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? TEST_KEY : OTHER_TENANT_KEY));
    const xOf = (i: number) => (Math.floor(i / 2) % 2 === 0 ? [1, 2, 3] : [1, 2, 3, 4]);
    const ref = interactiveQueue(p.prefix, 'ident', '1');
    const queue = new Queue(ref.name, { connection: { url: p.config.redisUrl }, prefix: ref.prefix });
    const submitted: Array<{ key: string; job: Job; x: number[] }> = [];
    try {
      // Rounds until one envelope holds jobs of both tenants (which jobs share a turn is up to the network).
      await waitUntil(async () => {
        submitted.push(
          ...(await Promise.all(
            keys.map(async (key, i) => {
              const res = await p.api('/v1/jobs', { method: 'POST', key, body: JSON.stringify({ model: 'ident', input: { x: xOf(i) } }) });
              expect(res.status).to.equal(202);
              return { key, job: (await res.json()) as Job, x: xOf(i) };
            }),
          )),
        );
        const envelopes = await queue.getJobs(['waiting', 'prioritized']);
        return envelopes.some((e) => new Set((e.data as { jobs: Array<{ tenant: string }> }).jobs.map((j) => j.tenant)).size > 1);
      }, 20_000, 'an envelope holding jobs of both tenants');
    } finally {
      await queue.close();
    }
    workerModels = await ModelRepository.load(workerRepo.root);
    worker = await createWorker(p.config, silentLogger, { models: workerModels });
    const ended = await Promise.all(
      submitted.map(({ key, job, x }) =>
        waitUntil(
          async () => {
            const j = (await (await p.api(`/v1/jobs/${job.id}`, { key })).json()) as Job;
            return j.status === 'failed' || j.status === 'succeeded' ? { key, job: j, x } : null;
          },
          30_000,
          `job ${job.id} ends`,
        ),
      ),
    );
    const idsOf = (key: string) => new Set(ended.filter((e) => e.key === key).map((e) => e.job.id));
    const leaks: string[] = [];
    for (const { key, job } of ended) {
      const others = idsOf(key === TEST_KEY ? OTHER_TENANT_KEY : TEST_KEY);
      const message = job.error?.message ?? '';
      for (const id of others) if (message.includes(id)) leaks.push(`${job.id} (${key}): ${message}`);
    }
    expect(leaks, leaks.join('\n')).to.deep.equal([]);
    for (const { job, x } of ended) {
      if (x.length === 4) {
        expect({ status: job.status, output: job.output }).to.deep.equal({ status: 'succeeded', output: { y: x } });
      } else {
        expect({ status: job.status, error: job.error }).to.deep.equal({
          status: 'failed',
          error: { code: 'invalid_input', message: 'input "x" of shape [3] does not fit the worker\'s copy of the model, which takes [4]' },
        });
      }
    }
  });
});
