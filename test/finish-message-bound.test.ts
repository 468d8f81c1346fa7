import { expect } from 'chai';
import { Redis } from 'ioredis';
import { EnvelopeQueue, JobWaiters, MESSAGE_RECORD_BYTES, READS_BY_NAME_SUFFIX } from '@infer/job-store';
import type { Job } from '@infer/contract';
import { encodeModel, initializer, node } from '../scripts/lib/onnx-builder.js';
import { DT, tensorInfo } from './helpers/int-graphs.js';
import { postJob } from './helpers/jobs.js';
import { waitUntil } from './helpers/wait.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { deletePrefix, uniquePrefix } from './helpers/redis-keys.js';

/**
 * A worker tells each waiting gateway of the jobs it ended in one pub/sub
 * message per batch, records included. Redis disconnects a subscriber that
 * has more unread than its pubsub output-buffer limit (32 MB by default;
 * 8 MB held for a minute), and everything sent to that gateway meanwhile is
 * lost: a batch of large outputs would do it. So a message carries at most
 * MESSAGE_RECORD_BYTES of records; the jobs past that are named alone, and
 * their waiters read the records.
 */
describe('FINISH: what one message to a gateway carries is bounded', function () {
  this.timeout(60_000);

  describe('the script and the waiters', () => {
    const prefix = uniquePrefix('finish-bound');
    let redis: Redis;
    let subscriber: Redis;
    let listener: Redis;
    let waiters: JobWaiters;
    let queue: EnvelopeQueue;

    before(async () => {
      redis = new Redis(TEST_REDIS_URL);
      subscriber = new Redis(TEST_REDIS_URL);
      listener = new Redis(TEST_REDIS_URL);
      waiters = new JobWaiters(subscriber, prefix, redis);
      await waiters.start();
      queue = new EnvelopeQueue(redis, { prefix, model: 'm', version: '1', resultTtlMs: 60_000 });
    });
    after(async () => {
      await waiters.close();
      subscriber.disconnect();
      listener.disconnect();
      await deletePrefix(TEST_REDIS_URL, prefix);
      redis.disconnect();
    });

    it('records past the bound travel by name; their waiters wake with none (to read it), the others with theirs', async () => {
      const big = (fill: number) => Buffer.alloc(1.5 * 1024 * 1024, fill);
      const records = { a: big(1), b: big(2), c: big(3), d: Buffer.from('small') };
      const messages: Buffer[] = [];
      listener.on('messageBuffer', (_channel: Buffer, message: Buffer) => messages.push(message));
      await listener.subscribe(waiters.channel);
      const waits = Object.fromEntries(Object.keys(records).map((id) => [id, waiters.register(`${prefix}-${id}`, 20_000).promise]));

      await queue.finish([
        {
          id: 'envelope-1',
          gateway: waiters.channel,
          jobs: Object.entries(records).map(([id, record]) => ({ id: `${prefix}-${id}`, record, wait: true })),
        },
      ]);

      const woken = await Promise.all(Object.values(waits));
      // a and b fit (3 MiB); c would pass 4 MiB; the small d still fits after them.
      expect(woken.map((r) => (r ? r.length : null))).to.deep.equal([records.a.length, records.b.length, null, records.d.length]);
      expect(woken[0]!.equals(records.a) && woken[1]!.equals(records.b)).to.equal(true);
      await new Promise<void>((resolve) => (messages.length > 0 ? resolve() : listener.once('messageBuffer', () => resolve())));
      expect(messages).to.have.length(1);
      expect(messages[0]!.length).to.be.at.most(MESSAGE_RECORD_BYTES + 1024);
      // Every job ended all the same: the records are there to read.
      // (Where FINISH writes it: under the queue's tag, as real job ids are made to fall.)
      const stored = await redis.getBuffer(`${queue.keys.ref.prefix}:job:${prefix}-c`);
      expect(stored?.equals(records.c), "c's record, for its waiters to read").to.equal(true);
    });

    it('a gateway from before the bound (its channel without the suffix), during a rolling upgrade, still gets every record', async () => {
      expect(waiters.channel.endsWith(READS_BY_NAME_SUFFIX), "this gateway's channel").to.equal(true);
      const older = `${prefix}:gateway:before-the-bound`;
      const messages: Buffer[] = [];
      const old = new Redis(TEST_REDIS_URL);
      try {
        old.on('messageBuffer', (_channel: Buffer, message: Buffer) => messages.push(message));
        await old.subscribe(older);
        const records = [1, 2, 3].map((fill) => Buffer.alloc(1.5 * 1024 * 1024, fill));
        await queue.finish([{ id: 'envelope-2', gateway: older, jobs: records.map((record, i) => ({ id: `${prefix}-old-${i}`, record, wait: true })) }]);
        await waitUntil(async () => (messages.length > 0 ? true : null), 10_000, 'the message');
        // Every frame with its record, as such a gateway reads them: "<id> <length>\n<record>".
        const lengths = [...messages[0]!.toString('latin1').matchAll(/-old-\d (\d+)\n/g)].map((m) => Number(m[1]));
        expect(lengths).to.deep.equal(records.map((r) => r.length));
      } finally {
        old.disconnect();
      }
    });
  });

  describe('a real gateway and worker, outputs of 4.8 MB', () => {
    const K = 1_200_000;
    let repo: TempModelRepo | undefined;
    let p: TestPlatform | undefined;
    let listener: Redis | undefined;

    before(async () => {
      // y[N, K] = x[N, 1] expanded: 4.8 MB of FP32 output a job.
      const model = encodeModel({
        name: 'wide',
        inputs: [tensorInfo('x', DT.FLOAT, ['N', 1])],
        outputs: [tensorInfo('y', DT.FLOAT, ['N', K])],
        nodes: [node('Expand', ['x', 'shape'], ['y'])],
        initializers: [initializer('shape', DT.INT64 as never, [2], [1, K])],
      });
      repo = tempModelRepo({ wide: { onnx: model, config: { max_batch_size: 4, max_delay_ms: 200 } } });
      p = await startPlatform({ models: repo.root, worker: false });
      listener = new Redis(p.config.redisUrl);
    });
    after(async () => {
      listener?.disconnect();
      await p?.close();
      repo?.remove();
    });

    it('jobs waited for on submit and by a long poll all answer 200 with their whole outputs; no message to the gateway passes the bound', async () => {
      let largest = 0;
      listener!.on('messageBuffer', (_channel: Buffer, message: Buffer) => (largest = Math.max(largest, message.length)));
      await listener!.subscribe(p!.gateway.waiters.channel);
      const xs = [1.5, 2.5, -3, 7];
      // Queued with no worker up: three waited for on submit, the fourth by a long poll (GET with Prefer: wait).
      const submits = xs.slice(0, 3).map((x) => postJob(p!, { model: 'wide', input: { x: [x] } }, { wait: 30 }));
      const { job: polled } = await postJob(p!, { model: 'wide', input: { x: [xs[3]] } });
      const poll = p!.api(`/v1/jobs/${polled.id}`, { headers: { prefer: 'wait=30' } });
      await waitUntil(async () => (p!.gateway.waiters.size === 4 ? true : null), 10_000, 'all four to wait');
      await p!.startWorker();
      const answers = await Promise.all([...submits.map(async (s) => (await s).job), poll.then(async (res) => (await res.json()) as Job)]);
      expect(answers.map((job) => job.status)).to.deep.equal(['succeeded', 'succeeded', 'succeeded', 'succeeded']);
      answers.forEach((job, i) => {
        const y = (job.output as { y: number[] }).y;
        expect([y.length, y[0], y[K - 1]]).to.deep.equal([K, xs[i], xs[i]]);
      });
      expect(largest, 'the largest message to the gateway').to.be.at.most(MESSAGE_RECORD_BYTES + 1024);
    });
  });
});
