import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys } from '@infer/contract';
import { EnvelopeQueue } from '@infer/job-store';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { blockEventLoop, waitUntil } from './helpers/wait.js';

/**
 * An envelope the stalled check put back and a worker took behind a
 * blocking read is stamped again (EnvelopeQueue.waitAndFetch): with the
 * moment of the take, not the moment its reply was read (a model run
 * holding the event loop can delay that by seconds), and only while the
 * take still holds it (an envelope ended meanwhile by the worker thought
 * dead is not written again).
 */
describe('envelopes: restamp of an envelope taken back behind a blocking read', function () {
  this.timeout(30_000);
  let prefix: string;
  let redis: Redis;
  let other: Redis;
  let blocking: Redis;
  const name = `restamp-blk-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

  beforeEach(() => {
    prefix = uniquePrefix('restamp');
    redis = new Redis(TEST_REDIS_URL);
    other = new Redis(TEST_REDIS_URL);
    blocking = new Redis(TEST_REDIS_URL, { connectionName: name, maxRetriesPerRequest: null });
  });
  afterEach(async () => {
    redis.disconnect();
    other.disconnect();
    blocking.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  /** An envelope of one job enqueued 10 s ago, taken by a worker that then died; the stalled check put it back (as BullMQ's does). */
  async function putBackEnvelope(q: EnvelopeQueue, marker: boolean): Promise<{ id: string; jobId: string }> {
    const k = q.keys;
    const enqueuedAt = Date.now() - 10_000;
    const id = 'env1';
    const jobId = `${k.ref.name}-job1`;
    const out = await q.enqueue({
      id,
      data: { model: 'm', version: '1', gateway: '', jobs: [{ id: jobId, tenant: 't', created_at: enqueuedAt }] },
      inputs: Buffer.alloc(16),
      instances: 1,
      limit: 0,
      now: enqueuedAt,
    });
    expect(out.accepted).to.equal(true);
    const dead = await q.fetch('dead-worker', 60_000, 1, 1);
    expect(dead !== 'paused' && dead.envelopes.map((e) => e.id)).to.deep.equal([id]);
    await other.zrem(k.marker, '0');
    // BullMQ's moveStalledJobsToWait: lock gone, out of active, RPUSH to wait (processedOn kept), a marker.
    await other.del(k.base + id + ':lock');
    await other.lrem(k.active, 1, id);
    await other.rpush(k.wait, id);
    if (marker) await other.zadd(k.marker, 0, '0');
    return { id, jobId };
  }

  it('does not recreate the envelope hash when the stalled (not dead) worker ended it meanwhile', async () => {
    const q = new EnvelopeQueue(redis, { prefix, model: 'm', version: '1', resultTtlMs: 60_000 });
    const zombie = new EnvelopeQueue(other, { prefix, model: 'm', version: '1', resultTtlMs: 60_000 });
    const k = interactiveKeys(prefix, 'm', '1');
    const { id, jobId } = await putBackEnvelope(q, true);
    // The worker that was thought dead (its loop held past its lock) comes back and ends the envelope, landing
    // between the new take's reply and its restamp (one round trip later).
    const client = redis as unknown as { inferRestampTake: (...a: unknown[]) => Promise<unknown> };
    const original = client.inferRestampTake.bind(redis);
    let zombieEnded = false;
    // The restamp is a second command after the take's reply: the old worker's FINISH lands in between.
    client.inferRestampTake = async (...args: unknown[]) => {
      if (!zombieEnded) {
        zombieEnded = true;
        await zombie.finish([{ id, gateway: '', jobs: [{ id: jobId, record: Buffer.from('{"status":"succeeded"}'), wait: false }] }]);
      }
      return original(...args);
    };
    const taken = await q.waitAndFetch(blocking, 2, 'new-worker', 60_000, 1, 1);
    expect(taken !== 'paused' && taken.envelopes.map((e) => e.id), 'precondition: the put-back envelope is taken').to.deep.equal([id]);
    expect(zombieEnded, 'precondition: the restamp ran').to.equal(true);
    const left = await other.hgetall(k.base + id);
    expect(left, `the envelope hash ${k.base + id} FINISH deleted was written again by the restamp (no TTL, in no list)`).to.deep.equal({});
  });

  it('stamps the take with when it happened, not when a model run holding the event loop let the reply be read', async () => {
    const q = new EnvelopeQueue(redis, { prefix, model: 'm', version: '1', resultTtlMs: 60_000 });
    const k = interactiveKeys(prefix, 'm', '1');
    const { id } = await putBackEnvelope(q, false);
    const taking = q.waitAndFetch(blocking, 10, 'new-worker', 60_000, 1, 1);
    // The consumer is idle on its blocking read.
    await waitUntil(async () => String(await other.client('LIST')).split('\n').some((l) => l.includes(`name=${name} `) && l.includes('cmd=bzpopmin')), 5_000, 'the blocking read');
    // The stalled check's marker wakes it; Redis runs the take before it answers this ZADD.
    await other.zadd(k.marker, 0, '0');
    const woke = Date.now();
    // Meanwhile another version's consumer in the same worker runs its model: the loop is held for 1.5 s.
    blockEventLoop(1_500);
    const taken = await taking;
    expect(taken !== 'paused' && taken.envelopes.map((e) => e.id), 'precondition').to.deep.equal([id]);
    const processedOn = Number(await other.hget(k.base + id, 'processedOn'));
    const takenAt = taken !== 'paused' ? taken.envelopes[0]!.takenAt : 0;
    expect(processedOn - woke, `processedOn (started_at) ${processedOn - woke} ms after the take; takenAt ${takenAt - woke} ms after`).to.be.below(500);
  });
});
