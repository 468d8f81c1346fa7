import { expect } from 'chai';
import { Redis } from 'ioredis';
import { loadConfig } from '@infer/config';
import { newJobId, queueTag, type EnvelopeJob } from '@infer/contract';
import { decodeInput } from '@infer/tensors';
import { EnvelopeWriter } from '../apps/gateway/src/jobs/envelope-writer.js';
import { encodeModel, initializer, node } from '../scripts/lib/onnx-builder.js';
import { b64Fp32, readResults, submitBatch, waitForBatchEnd } from './helpers/batches.js';
import { DT, tensorInfo } from './helpers/int-graphs.js';
import { pollJob, postJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * A model's outputs can be far larger than its inputs, and nothing at submit
 * time says how large. A job or batch item whose outputs are over
 * MAX_OUTPUT_BYTES fails alone, `output_too_large`, and the work beside it
 * ends as usual; what one script call that ends work carries is bounded too
 * (the worker's `callOutputBytes`, 256 MiB, lowered here to reach it with
 * small outputs). Unbounded, a job with a 600 MB output stayed `running`:
 * Redis refuses a value that large, so its end could never be written.
 *
 * The model tiles its input eight times: y[N, 8L] from x[N, L], so an input
 * of L floats makes 32·L bytes of output.
 */
const LIMIT = 64 * 1024;
const perInput = (length: number) => 32 * length;

function tileModel(): Uint8Array {
  return encodeModel({
    name: 'tile8',
    inputs: [tensorInfo('x', DT.FLOAT, ['N', 'L'])],
    outputs: [tensorInfo('y', DT.FLOAT, ['N', 'M'])],
    nodes: [node('Tile', ['x', 'repeats'], ['y'])],
    initializers: [initializer('repeats', DT.INT64 as never, [2], [1, 8])],
  });
}

const ramp = (length: number, from = 0) => Array.from({ length }, (_, i) => from + i);

describe('outputs too large to keep fail their own job or item, output_too_large', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform | undefined;

  before(() => {
    repo = tempModelRepo({ tile8: { onnx: tileModel(), config: { max_batch_size: 8, max_delay_ms: 20 } } });
  });
  afterEach(async () => {
    await p?.close();
    p = undefined;
  });
  after(() => repo.remove());

  it('a job over MAX_OUTPUT_BYTES fails with a message that says so; the jobs beside it succeed, and the worker goes on', async () => {
    p = await startPlatform({ models: repo.root, env: { MAX_OUTPUT_BYTES: String(LIMIT) } });
    // 4096 floats in: 131072 bytes out. Sent with two small jobs in the same moment (one envelope, as likely as not).
    const [big, small1, small2] = await Promise.all([
      postJob(p, { model: 'tile8', input: { x: b64Fp32(ramp(4096)) } }, { wait: 20 }),
      postJob(p, { model: 'tile8', input: { x: ramp(4, 1) } }, { wait: 20 }),
      postJob(p, { model: 'tile8', input: { x: ramp(4, 5) } }, { wait: 20 }),
    ]);
    expect(big.job.status).to.equal('failed');
    expect(big.job.output).to.equal(null);
    expect(big.job.error!.code).to.equal('output_too_large');
    expect(big.job.error!.message).to.contain(`${perInput(4096)} bytes`).and.contain(`${LIMIT}`).and.contain('MAX_OUTPUT_BYTES');
    expect(big.job.metrics, 'it ran: its metrics say how').to.not.equal(null);
    expect(small1.job.status).to.equal('succeeded');
    expect((small1.job.output as { y: number[] }).y).to.deep.equal([1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4]);
    expect(small2.job.status).to.equal('succeeded');
    // At the limit exactly is kept.
    const atLimit = await postJob(p, { model: 'tile8', input: { x: b64Fp32(ramp(LIMIT / 32)) } }, { wait: 20 });
    expect(atLimit.job.status).to.equal('succeeded');
    expect((atLimit.job.output as { y: number[] }).y).to.have.length(LIMIT / 4);
    // Polled later, the failed job reads the same.
    expect((await pollJob(p, big.job.id)).error!.code).to.equal('output_too_large');
  });

  it('an envelope whose records would pass the call bound together: the jobs past it fail, the rest succeed; envelopes past it end in calls of their own', async () => {
    p = await startPlatform({ models: repo.root, env: { MAX_OUTPUT_BYTES: String(LIMIT) }, worker: false });
    const redis = new Redis(p.config.redisUrl);
    const listener = new Redis(p.config.redisUrl);
    try {
      const channel = `${p.prefix}:gateway:test`;
      const messages: Buffer[] = [];
      listener.on('messageBuffer', (_c: Buffer, m: Buffer) => messages.push(m));
      await listener.subscribe(channel);
      const model = p.gateway.models.resolve('tile8', '1');
      const writer = new EnvelopeWriter({ redis, prefix: p.prefix, resultTtlMs: 60_000, maxQueueDepth: 1_000_000, gatewayChannel: channel });
      // Jobs added in one turn travel as one envelope; each waits (FINISH tells the channel of it).
      const envelope = async (lengths: number[]) => {
        const jobs = lengths.map((len) => {
          const job: EnvelopeJob = { id: newJobId(queueTag('tile8', '1')), tenant: 'tenant-a', created_at: Date.now(), shapes: [[len]], wait: true };
          return { id: job.id, written: writer.add(model, job, [decodeInput(ramp(len), model.inputs[0]!)]) };
        });
        await Promise.all(jobs.map((j) => j.written));
        return jobs.map((j) => j.id);
      };
      // Four full-size jobs (64 KiB of output each) in one envelope, with a 160 KiB call bound: two fit.
      const full = LIMIT / 32;
      const one = await envelope([full, full, full, full]);
      // Then two envelopes of one full-size job each, taken in the same batch: 128 KiB, then 64 KiB past the call's 160.
      const two = await envelope([full]);
      const three = await envelope([full]);
      await p.startWorker({ callOutputBytes: 160 * 1024 });
      const jobs = await Promise.all([...one, ...two, ...three].map((id) => pollJob(p!, id, 20_000)));
      expect(jobs.map((j) => j.status)).to.deep.equal(['succeeded', 'succeeded', 'failed', 'failed', 'succeeded', 'succeeded']);
      // All three envelopes were taken together and ran as one batch: the bound split its end into calls.
      expect(jobs.map((j) => j.metrics!.batch_size)).to.deep.equal([6, 6, 6, 6, 6, 6]);
      expect(jobs[2]!.error!.code).to.equal('output_too_large');
      expect(jobs[2]!.error!.message).to.contain('the jobs submitted with it').and.contain(`${160 * 1024} bytes`);
      for (const j of [jobs[0]!, jobs[1]!, jobs[4]!, jobs[5]!]) expect((j.output as { y: number[] }).y).to.have.length(LIMIT / 4);
      // No call ended more than the bound: each FINISH's one message carried at most 160 KiB of records.
      expect(messages.length, 'one message per FINISH call').to.equal(2);
      for (const m of messages) expect(m.length).to.be.at.most(160 * 1024 + 8 * 1024);
    } finally {
      listener.disconnect();
      redis.disconnect();
    }
  });

  it('a batch item over MAX_OUTPUT_BYTES fails alone; items past what its chunk may store fail, those before them are kept', async () => {
    p = await startPlatform({ models: repo.root, env: { MAX_OUTPUT_BYTES: String(LIMIT) }, worker: false });
    await p.startWorker({ callOutputBytes: 160 * 1024 });
    const full = LIMIT / 32;
    const items = [
      { custom_id: 'small-1', input: { x: ramp(4, 1) } },
      { custom_id: 'too-large', input: { x: b64Fp32(ramp(2 * full)) } },
      { custom_id: 'full-1', input: { x: b64Fp32(ramp(full)) } },
      { custom_id: 'full-2', input: { x: b64Fp32(ramp(full)) } },
      { custom_id: 'full-3', input: { x: b64Fp32(ramp(full)) } },
      { custom_id: 'small-2', input: { x: ramp(4, 5) } },
    ];
    const batch = await submitBatch(p, { json: { model: 'tile8', items } });
    const ended = await waitForBatchEnd(p, batch.id, 30_000);
    expect(ended.request_counts).to.deep.equal({ total: 6, succeeded: 4, failed: 2, canceled: 0 });
    const lines = Object.fromEntries((await readResults(p, batch.id)).map((l) => [l.custom_id, l]));
    expect(lines['too-large']!.error!.code).to.equal('output_too_large');
    expect(lines['too-large']!.error!.message).to.contain(`${perInput(2 * full)} bytes`).and.contain('MAX_OUTPUT_BYTES');
    // 64 KiB each: the small ones and two full ones fit the chunk's 160 KiB; the third full one does not.
    expect(lines['full-3']!.error!.code).to.equal('output_too_large');
    expect(lines['full-3']!.error!.message).to.contain('its batch chunk');
    for (const id of ['small-1', 'full-1', 'full-2', 'small-2']) expect(lines[id]!.error, id).to.equal(null);
    expect((lines['full-2']!.output as { y: number[] }).y).to.have.length(LIMIT / 4);
    expect((lines['small-2']!.output as { y: number[] }).y.slice(0, 4)).to.deep.equal([5, 6, 7, 8]);
  });

  it('MAX_OUTPUT_BYTES past 32 MiB is refused at start, with the reason; it is 16 MiB unless set', () => {
    expect(() => loadConfig({ MAX_OUTPUT_BYTES: String(32 * 1024 * 1024 + 1) })).to.throw(/MAX_OUTPUT_BYTES: must be at most 33554432/);
    expect(loadConfig({ MAX_OUTPUT_BYTES: String(32 * 1024 * 1024) }).maxOutputBytes).to.equal(32 * 1024 * 1024);
    expect(loadConfig({}).maxOutputBytes).to.equal(16 * 1024 * 1024);
  });
});
