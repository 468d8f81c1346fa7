import { expect } from 'chai';
import { BufferPool, stack, tensorBuffers } from '@infer/tensors';
import { ElemType, encodeModel, node, valueInfo } from '../scripts/lib/onnx-builder.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { flatten, runJob } from './helpers/jobs.js';

/**
 * The gateway hands the large buffers a job's input passes through (its
 * body put together from chunks, its base64 decoded, the envelope's packed
 * inputs) back to a pool and uses them again. A buffer handed back while
 * something still reads it would put one job's input into another's: these
 * tests run many large jobs at once, round after round, and check that each
 * gets its own input back.
 */

describe('tensor buffers: the pool', () => {
  it('hands a buffer taken back out again, and nothing else', () => {
    const pool = new BufferPool({ minBytes: 1024, maxHeldBytes: 1 << 20 });
    const a = pool.acquire(5000);
    expect(a.length).to.equal(5000);
    expect(a.byteOffset).to.equal(0);
    pool.release(a);
    const b = pool.acquire(4900); // the same capacity class
    expect(b.buffer).to.equal(a.buffer);
    // Handed back twice: the second is ignored, so two holders never share one buffer.
    pool.release(b);
    pool.release(b);
    const c = pool.acquire(5000);
    const d = pool.acquire(5000);
    expect(c.buffer).to.not.equal(d.buffer);
  });

  it('ignores memory it did not hand out, does not hold small sizes, and holds at most maxHeldBytes', () => {
    const pool = new BufferPool({ minBytes: 1024, maxHeldBytes: 16 * 1024 });
    pool.release(new Uint8Array(8192));
    pool.release(Buffer.alloc(8192));
    expect(pool.heldBytes).to.equal(0);
    const small = pool.acquire(100);
    pool.release(small);
    expect(pool.heldBytes).to.equal(0);
    const big = [pool.acquire(8192), pool.acquire(8192), pool.acquire(8192)];
    for (const b of big) pool.release(b);
    expect(pool.heldBytes).to.equal(16 * 1024);
    // A typed array over a pooled buffer comes back by its buffer.
    const e = pool.acquire(8192);
    pool.release(new Float32Array(e.buffer, 0, 2048));
    expect(pool.acquire(8192).buffer).to.equal(e.buffer);
  });
});

describe('tensor buffers: stacking a batch', () => {
  const pool = new BufferPool({ minBytes: 16, maxHeldBytes: 1 << 20 });
  const instance = (bytes: Uint8Array) => ({ datatype: 'FP32' as const, shape: [4], bytes });

  it('copies instances from several envelopes into a buffer of the pool, and views one envelope in place', () => {
    const a = new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer);
    const b = new Uint8Array(new Float32Array([5, 6, 7, 8]).buffer);
    const copied = stack([instance(a), instance(b)], pool);
    expect(Array.from(copied.data as Float32Array)).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8]);
    pool.release(copied.data);
    expect(pool.heldBytes, 'the copy was the pool\'s').to.be.greaterThan(0);
    // Back to back in one buffer (one envelope): a view, nothing taken from the pool.
    const packed = new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]).buffer);
    const held = pool.heldBytes;
    const viewed = stack([instance(packed.subarray(0, 16)), instance(packed.subarray(16))], pool);
    expect(viewed.data.buffer).to.equal(packed.buffer);
    expect(pool.heldBytes).to.equal(held);
  });
});

describe('tensor buffers: many large jobs at once', function () {
  this.timeout(120_000);
  /** Wide enough that a body is ~107 KB: read in several chunks, put together, lifted and packed through the pool. */
  const WIDTH = 20_000;
  let repo: TempModelRepo;
  let p: TestPlatform;

  before(async () => {
    const onnx = encodeModel({
      name: 'identity_big',
      inputs: [valueInfo('x', ElemType.FLOAT, ['batch', WIDTH])],
      outputs: [valueInfo('y', ElemType.FLOAT, ['batch', WIDTH])],
      nodes: [node('Identity', ['x'], ['y'])],
    });
    repo = tempModelRepo({ big: { onnx, config: { max_batch_size: 16, max_delay_ms: 2 } } });
    p = await startPlatform({ models: repo.root });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
  });

  it('each job gets its own input back, round after round, while the buffers are used again', async () => {
    const heldBefore = tensorBuffers.heldBytes;
    for (let round = 0; round < 3; round++) {
      const inputs = Array.from({ length: 24 }, (_, i) => Float32Array.from({ length: WIDTH }, (_, k) => round * 1e6 + i * 1e3 + (k % 997) + Math.random()));
      const jobs = await Promise.all(
        inputs.map((x) => runJob(p, { model: 'big', input: { x: { datatype: 'FP32', shape: [WIDTH], b64: Buffer.from(x.buffer).toString('base64') } } }, 60)),
      );
      jobs.forEach((job, i) => {
        expect(job.status, job.error?.message).to.equal('succeeded');
        const y = flatten((job.output as Record<string, unknown>).y);
        expect(y.length).to.equal(WIDTH);
        const mismatch = y.findIndex((v, k) => Math.fround(v as number) !== inputs[i]![k]);
        expect(mismatch, `job ${i} of round ${round}: value ${mismatch} is not its own input's`).to.equal(-1);
      });
    }
    // The buffers did go round: the pool holds some for the next request.
    expect(tensorBuffers.heldBytes).to.be.greaterThan(heldBefore);
  });
});
