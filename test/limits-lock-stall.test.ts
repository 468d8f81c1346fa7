import { expect } from 'chai';
import { Redis } from 'ioredis';
import { allowanceInstances, DEPTH_ALLOWANCE_FIELD, interactiveKeys, newJobId, queueTag, type EnvelopeJob } from '@infer/contract';
import { ModelRepository, type ModelVersion } from '@infer/models';
import { decodeInput } from '@infer/tensors';
import { EnvelopeWriter } from '../apps/gateway/src/jobs/envelope-writer.js';
import { seededFloats } from './helpers/ort-reference.js';
import { deletePrefix, SHIPPED_MODELS, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { RedisProxy } from './helpers/tcp-proxy.js';

/**
 * docs/api.md POST /v1/jobs: the limits "hold exactly across any number of gateways". A holder stalled
 * past the lock's 2 s loses it to the next. Here one gateway's replies stall 3 s (a Redis latency spike seen
 * by one connection, a network hiccup, a long GC pause) in the middle of making room: the other gateway
 * takes the lapsed lock; the stalled one, finding the lock no longer its own, moves nothing more, so the
 * queues never hold more than MAX_QUEUE_DEPTH.
 */
describe('limits: a lock holder stalled past the lock’s 2 s', function () {
  this.timeout(30_000);
  let repo: ModelRepository;
  let prefix: string;
  let proxy: RedisProxy;
  const connections: Redis[] = [];

  before(async () => {
    repo = await ModelRepository.load(SHIPPED_MODELS, { only: ['mlp'] });
  });
  beforeEach(async () => {
    prefix = uniquePrefix('stall');
    proxy = new RedisProxy();
    await proxy.listen();
  });
  afterEach(async () => {
    for (const c of connections.splice(0)) c.disconnect();
    await proxy.close();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });
  after(async () => {
    await repo.close();
  });

  function writer(url: string): EnvelopeWriter {
    const redis = new Redis(url);
    connections.push(redis);
    const w = new EnvelopeWriter({ redis, prefix, resultTtlMs: 60_000, maxQueueDepth: 20, gatewayChannel: `${prefix}:gateway:${connections.length}` });
    for (const v of ['1', '2']) w.queueOf(repo.resolve('mlp', v));
    return w;
  }

  async function burst(w: EnvelopeWriter, version: string, n: number): Promise<number> {
    const model: ModelVersion = repo.resolve('mlp', version);
    const outcomes = await Promise.allSettled(
      Array.from({ length: n }, (_, i) => {
        const job: EnvelopeJob = { id: newJobId(queueTag('mlp', version)), tenant: 't', created_at: Date.now() };
        return w.add(model, job, [decodeInput(Array.from(seededFloats(64, i)), model.inputs[0]!)]);
      }),
    );
    for (const o of outcomes) if (o.status === 'rejected') expect((o.reason as { code: string }).code).to.be.oneOf(['queue_full', 'quota_exceeded', 'unavailable']);
    return outcomes.filter((o) => o.status === 'fulfilled').length;
  }

  it('MAX_QUEUE_DEPTH=20: the queues never hold more than 20, nor do the allowances add up to more', async () => {
    const a = writer(proxy.url);
    const b = writer(TEST_REDIS_URL);
    expect(await burst(a, '1', 1)).to.equal(1);
    expect(await burst(b, '2', 1)).to.equal(1);
    // a's next burst is past its allowance: under the lock it reclaims from version 2's queue. The reply to that
    // reclaim (and all after it on a's connection) comes 3 s late.
    const q2 = interactiveKeys(prefix, 'mlp', '2');
    const stalled = proxy.stallAfter(`${q2.queued}\r\n$${q2.meta.length}\r\n${q2.meta}`, 3_000);
    const onA = burst(a, '1', 15);
    await stalled;
    // Meanwhile b writes to version 2: past its allowance, it waits for the lock, which lapses after 2 s.
    const onB = await burst(b, '2', 10);
    const tookA = await onA;
    const r = connections[1]!;
    const k1 = interactiveKeys(prefix, 'mlp', '1');
    const [q1, c2, a1, a2] = await Promise.all([r.get(k1.queued), r.get(q2.queued), r.hget(k1.meta, DEPTH_ALLOWANCE_FIELD), r.hget(q2.meta, DEPTH_ALLOWANCE_FIELD)]);
    const queued = Number(q1) + Number(c2);
    const allowed = allowanceInstances(a1) + allowanceInstances(a2);
    expect({ queued, allowed }, `a took ${tookA}, b ${onB}`).to.deep.equal({ queued: Math.min(queued, 20), allowed: Math.min(allowed, 20) });
  });
});
