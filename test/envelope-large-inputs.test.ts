import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { interactiveKeys, type Job } from '@infer/contract';
import { EXTERNAL_INPUT_BYTES } from '@infer/job-store';
import { ElemType, encodeModel, node, valueInfo } from '../scripts/lib/onnx-builder.js';
import { flatten, pollJob, postJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * An envelope whose inputs are EXTERNAL_INPUT_BYTES or more keeps them in a
 * key of its own (`<envelope>:in`), written by a plain SET and read by a
 * plain MGET, because Redis's Lua hashes every string that enters or leaves
 * a script (~1.7 ms of Redis's one thread for six 110 KB images). These
 * tests hold that key to the envelope's life: there while the envelope is
 * queued (and never expiring then), gone with it, never left behind by a
 * refused envelope nor by one deleted under its queue (by hand, or BullMQ's
 * obliterate), and a key lost under a queued envelope fails its jobs
 * instead of hanging them. Small inputs stay in the envelope's hash.
 */

const BIG = 20_000; // 80 KB of FP32 a job
const SMALL = 16; // 64 bytes a job

function identity(name: string, width: number): Uint8Array {
  return encodeModel({
    name,
    inputs: [valueInfo('x', ElemType.FLOAT, ['batch', width])],
    outputs: [valueInfo('y', ElemType.FLOAT, ['batch', width])],
    nodes: [node('Identity', ['x'], ['y'])],
  });
}

const bodyOf = (model: string, x: Float32Array) => ({ model, input: { x: { datatype: 'FP32', shape: [x.length], b64: Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString('base64') } } });
const inputOf = (width: number, seed: number) => Float32Array.from({ length: width }, (_, k) => seed * 1000 + (k % 991));

describe('envelopes: large inputs in a key of their own', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let redis: Redis;

  before(async () => {
    expect(BIG * 4, 'a big job is over the threshold by itself').to.be.greaterThan(EXTERNAL_INPUT_BYTES);
    expect(SMALL * 4 * 16, 'a full envelope of small jobs stays under it').to.be.lessThan(EXTERNAL_INPUT_BYTES);
    repo = tempModelRepo({
      big: { onnx: identity('identity_big', BIG), config: { max_batch_size: 8, max_delay_ms: 2 } },
      small: { onnx: identity('identity_small', SMALL), config: { max_batch_size: 16, max_delay_ms: 2 } },
    });
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    redis?.disconnect();
    repo?.remove();
  });

  /** A platform on the test's repository, with no worker until the test starts one; closed after `fn`. */
  async function withPlatform(fn: (p: TestPlatform) => Promise<void>, options: { env?: Record<string, string> } = {}): Promise<void> {
    const p = await startPlatform({ models: repo.root, worker: false, ...options });
    try {
      await fn(p);
    } finally {
      await p.close();
    }
  }

  /** The envelope ids waiting in a model's queue, and each one's hash fields. */
  async function queued(p: TestPlatform, model: string): Promise<Array<{ id: string; fields: Record<string, Buffer> }>> {
    const keys = interactiveKeys(p.prefix, model, '1');
    const ids = await redis.lrange(keys.wait, 0, -1);
    return Promise.all(ids.map(async (id) => ({ id, fields: await redis.hgetallBuffer(keys.base + id) })));
  }

  /** Every inputs key under the platform's prefix. */
  async function inputKeys(p: TestPlatform): Promise<string[]> {
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${p.prefix}:*:in`, 'COUNT', 1000);
      cursor = next;
      found.push(...keys);
    } while (cursor !== '0');
    return found;
  }

  it('while queued, the inputs are in the key (no expiry), not the hash; the worker runs each job on its own input, and the key goes with the envelope', async () =>
    withPlatform(async (p) => {
      const inputs = [1, 2, 3].map((seed) => inputOf(BIG, seed));
      const submitted = await Promise.all(inputs.map((x) => postJob(p, bodyOf('big', x))));
      const envelopes = await queued(p, 'big');
      expect(envelopes.length).to.be.greaterThan(0);
      let bytes = 0;
      for (const e of envelopes) {
        expect(e.fields.ix?.toString(), 'marked as keeping its inputs outside').to.equal('1');
        expect(e.fields, 'no inputs in the hash').to.not.have.property('in');
        const key = interactiveKeys(p.prefix, 'big', '1').inputs(e.id);
        expect(await redis.pttl(key), `${key} has no expiry once queued`).to.equal(-1);
        bytes += await redis.strlen(key);
      }
      expect(bytes).to.equal(3 * BIG * 4);

      await p.startWorker();
      const jobs: Job[] = await Promise.all(submitted.map((s) => pollJob(p, s.job.id, 30_000)));
      jobs.forEach((job, i) => {
        expect(job.status, job.error?.message).to.equal('succeeded');
        const y = flatten((job.output as Record<string, unknown>).y);
        expect(y.length).to.equal(BIG);
        expect(y.findIndex((v, k) => v !== inputs[i]![k]), `job ${i} got another's input`).to.equal(-1);
      });
      expect(await inputKeys(p), 'no inputs key outlives its envelope').to.deep.equal([]);
    }));

  it('small inputs stay in the envelope\'s hash, with no key of their own', async () =>
    withPlatform(async (p) => {
      await Promise.all([1, 2, 3].map((seed) => postJob(p, bodyOf('small', inputOf(SMALL, seed)))));
      const envelopes = await queued(p, 'small');
      expect(envelopes.length).to.be.greaterThan(0);
      for (const e of envelopes) {
        expect(e.fields.in?.length).to.be.greaterThan(0);
        expect(e.fields).to.not.have.property('ix');
      }
      expect(await inputKeys(p)).to.deep.equal([]);
    }));

  it('an envelope refused by MAX_QUEUE_DEPTH leaves no inputs key behind', async () =>
    withPlatform(async (p) => {
      await postJob(p, bodyOf('big', inputOf(BIG, 1)));
      const refused = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify(bodyOf('big', inputOf(BIG, 2))) });
      expect(refused.status).to.equal(503);
      const [envelope] = await queued(p, 'big');
      expect(await inputKeys(p)).to.deep.equal([interactiveKeys(p.prefix, 'big', '1').inputs(envelope!.id)]);
    }, { env: { MAX_QUEUE_DEPTH: '1' } }));

  it('a queued envelope whose inputs key is gone fails its jobs with the reason, and the worker goes on', async () =>
    withPlatform(async (p) => {
      const lost = await postJob(p, bodyOf('big', inputOf(BIG, 1)));
      const [envelope] = await queued(p, 'big');
      expect(await redis.del(interactiveKeys(p.prefix, 'big', '1').inputs(envelope!.id))).to.equal(1);
      await p.startWorker();
      const job = await pollJob(p, lost.job.id, 30_000);
      expect(job.status).to.equal('failed');
      expect(job.error?.message).to.match(/input bytes are gone from Redis/);
      // The next job runs.
      const next = await postJob(p, bodyOf('big', inputOf(BIG, 2)), { wait: 20 });
      expect(next.job.status).to.equal('succeeded');
      await waitUntil(async () => (await inputKeys(p)).length === 0, 5000, 'the inputs keys to be gone');
    }));

  it('an envelope deleted under its queue by hand: the take that finds it gone deletes its inputs key too', async () =>
    withPlatform(async (p) => {
      const k = interactiveKeys(p.prefix, 'big', '1');
      await postJob(p, bodyOf('big', inputOf(BIG, 1)));
      const [envelope] = await redis.lrange(k.wait, 0, -1);
      expect(await redis.del(k.base + envelope)).to.equal(1); // an operator removes a (poison, say) envelope
      const worker = await p.startWorker();
      await waitUntil(async () => (await redis.llen(k.wait)) + (await redis.llen(k.active)) === 0, 10_000, 'the take to drop the id');
      expect(await inputKeys(p)).to.deep.equal([]);
      expect((await worker.sweep()).droppedJobs, "the sweep drops the job's index entry").to.equal(1);
    }));

  it("an obliterated queue: the workers' sweep deletes the inputs keys of the envelopes it finds gone", async () =>
    withPlatform(async (p) => {
      const k = interactiveKeys(p.prefix, 'big', '1');
      await Promise.all([1, 2].map((seed) => postJob(p, bodyOf('big', inputOf(BIG, seed)))));
      expect((await inputKeys(p)).length).to.be.greaterThan(0);
      const queue = new Queue(k.ref.name, { connection: redis, prefix: k.ref.prefix });
      try {
        await queue.obliterate({ force: true });
      } finally {
        await queue.close();
      }
      const worker = await p.startWorker();
      expect((await worker.sweep()).droppedJobs).to.equal(2);
      expect(await inputKeys(p)).to.deep.equal([]);
    }));

  it('inputs gone before the script runs (evicted under a policy a queue must not have): 503 unavailable, nothing written, the Idempotency-Key free', async () =>
    withPlatform(async (p) => {
      // The write of the inputs key is answered but lost, as an eviction between it and the script would lose it.
      const envelopes = p.gateway.connections.envelopes as unknown as { set: (...args: unknown[]) => Promise<unknown> };
      const set = envelopes.set;
      envelopes.set = function (this: unknown) {
        envelopes.set = set;
        return Promise.resolve('OK');
      };
      const submit = () => p.api('/v1/jobs', { method: 'POST', body: JSON.stringify(bodyOf('big', inputOf(BIG, 1))), headers: { 'idempotency-key': 'lost-1' } });
      const res = await submit();
      expect(res.headers.get('retry-after')).to.equal('1');
      const problem = (await res.json()) as { status: number; code: string; detail: string };
      expect([problem.status, problem.code]).to.deep.equal([503, 'unavailable']);
      expect(problem.detail).to.match(/noeviction/);
      const k = interactiveKeys(p.prefix, 'big', '1');
      expect([await redis.llen(k.wait), await redis.hlen(k.index), Number(await redis.get(k.queued))]).to.deep.equal([0, 0, 0]);
      // The refusal released the key: the same submit goes through now.
      expect((await submit()).status).to.equal(202);
    }));
});
