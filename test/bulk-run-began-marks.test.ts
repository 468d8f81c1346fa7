import { expect } from 'chai';
import { Redis } from 'ioredis';
import { markRunBegan } from '@infer/job-store';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/redis-keys.js';

/**
 * MARK_RUN_BEGAN (markRunBegan) on a chunk's BullMQ job hash, state by
 * state: BullMQ's stall count (`stc`, and `defa` past the limit) is set to
 * the stalls of the chunk's own runs (`ors`), which survive a retry
 * (BullMQ keeps `stc` across attempts, and so must the count that replaces
 * it); stalls while the chunk was only held beside another's run do not
 * count. The whole path, with workers that really crash, is in
 * bulk-prefetched-beside-crash.test.ts.
 */
describe('bulk: the marks a chunk run leaves, and the stalls that count', function () {
  this.timeout(10_000);
  const prefix = uniquePrefix('rb');
  const MAX_STALLS = 2;
  let redis: Redis;
  let n = 0;
  before(() => {
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    redis.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  /** A chunk's job hash with `fields`, held under take `tok`; then a take of it in `attempt`. */
  async function take(fields: Record<string, string>, attempt: number): Promise<{ own: number | 'not-held'; hash: Record<string, string> }> {
    const jobKey = `${prefix}:{bulk}:q:${++n}`;
    await redis.hset(jobKey, { data: '{}', ...fields });
    await redis.set(`${jobKey}:lock`, 'tok');
    const own = await markRunBegan(redis, jobKey, 'tok', attempt, MAX_STALLS);
    return { own, hash: await redis.hgetall(jobKey) };
  }

  it("a first take: marks the attempt, nothing stalled", async () => {
    const { own, hash } = await take({}, 0);
    expect(own).to.equal(0);
    expect(hash).to.include({ rb: '0', stc: '0' });
  });

  it("stalls while it was only held beside another's run are cleared, past the limit too", async () => {
    const { own, hash } = await take({ stc: '3', defa: 'job stalled more than allowable limit' }, 0);
    expect(own).to.equal(0);
    expect(hash).to.include({ rb: '0', stc: '0' });
    expect(hash).to.not.have.property('defa');
  });

  it('a take that finds its run begun in this attempt counts one stall of its own, and keeps a row it noted', async () => {
    const { own, hash } = await take({ rb: '0', stc: '1', run: '7' }, 0);
    expect(own).to.equal(1);
    expect(hash).to.include({ rb: '0', ors: '1', stc: '1', run: '7' });
  });

  it('its own stalls past the limit: a deferred failure, kept', async () => {
    const { own, hash } = await take({ rb: '0', ors: '2', stc: '3' }, 0);
    expect(own).to.equal(3);
    expect(hash).to.include({ stc: '3', defa: 'job stalled more than allowable limit' });
  });

  it('its own stalls in an earlier attempt still count after a retry; a row noted then is not blamed now', async () => {
    // Attempt 0: its run crashed a worker, then a row run alone crashed another; its write then failed
    // for a transient reason and BullMQ retried it (attempt 1), then a neighbour's crash stalled it once more.
    const { own, hash } = await take({ rb: '0', ors: '2', stc: '3', run: '4', defa: 'job stalled more than allowable limit' }, 1);
    expect(own).to.equal(2);
    expect(hash).to.include({ rb: '1', ors: '2', stc: '2' });
    expect(hash).to.not.have.property('defa');
    expect(hash).to.not.have.property('run');
  });

  it('a take that no longer holds the chunk writes nothing', async () => {
    const jobKey = `${prefix}:{bulk}:q:${++n}`;
    await redis.hset(jobKey, { stc: '1' });
    await redis.set(`${jobKey}:lock`, 'another');
    expect(await markRunBegan(redis, jobKey, 'tok', 0, MAX_STALLS)).to.equal('not-held');
    expect(await redis.hgetall(jobKey)).to.deep.equal({ stc: '1' });
  });
});
