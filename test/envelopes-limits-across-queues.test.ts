import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, keys, newJobId, queueTag, type EnvelopeJob } from '@infer/contract';
import { ModelRepository, type ModelVersion } from '@infer/models';
import { decodeInput } from '@infer/tensors';
import { EnvelopeWriter } from '../apps/gateway/src/jobs/envelope-writer.js';
import { seededFloats } from './helpers/ort-reference.js';
import { deletePrefix, SHIPPED_MODELS, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';

/**
 * MAX_QUEUE_DEPTH and TENANT_MAX_QUEUED are over every model version's
 * queue, and each queue's script counts only its own. These tests take the
 * worst case for that: two gateways (two writers, two connections) whose
 * counts of the other queue never refresh, each writing to its own queue at
 * the same moment. Each then sees the other's queue empty; the limits must
 * hold all the same.
 */

describe('envelopes: the limits across queues, two gateways blind to each other’s writes', function () {
  this.timeout(30_000);
  let repo: ModelRepository;
  let prefix: string;
  const connections: Redis[] = [];

  before(async () => {
    repo = await ModelRepository.load(SHIPPED_MODELS, { only: ['mlp'] });
  });
  beforeEach(() => {
    prefix = uniquePrefix('limits');
  });
  afterEach(async () => {
    for (const c of connections.splice(0)) c.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });
  after(async () => {
    await repo.close();
  });

  /** A gateway's writer that has read every queue once (all empty) and never reads them again. */
  async function blindWriter(limits: { maxQueueDepth?: number; tenantMaxQueued?: number }): Promise<EnvelopeWriter> {
    const redis = new Redis(TEST_REDIS_URL);
    connections.push(redis);
    const w = new EnvelopeWriter({
      redis,
      prefix,
      resultTtlMs: 60_000,
      maxQueueDepth: limits.maxQueueDepth ?? 1_000_000,
      tenantMaxQueued: limits.tenantMaxQueued,
      gatewayChannel: `${prefix}:gateway:${connections.length}`,
      depthRefreshMs: 3_600_000,
    });
    for (const v of ['1', '2']) w.queueOf(repo.resolve('mlp', v));
    expect(await w.queuedTotal()).to.equal(0);
    return w;
  }

  /** `n` jobs of `tenant` added to `w` in one turn, for mlp `version`: how many it accepted. */
  async function burst(w: EnvelopeWriter, version: string, n: number, tenant = 't'): Promise<number> {
    const model: ModelVersion = repo.resolve('mlp', version);
    const outcomes = await Promise.allSettled(
      Array.from({ length: n }, (_, i) => {
        const job: EnvelopeJob = { id: newJobId(queueTag('mlp', version)), tenant, created_at: Date.now() };
        return w.add(model, job, [decodeInput(Array.from(seededFloats(64, i)), model.inputs[0]!)]);
      }),
    );
    for (const o of outcomes) if (o.status === 'rejected') expect((o.reason as { code: string }).code).to.be.oneOf(['queue_full', 'quota_exceeded']);
    return outcomes.filter((o) => o.status === 'fulfilled').length;
  }

  async function queued(field: 'queued' | { tenant: string }): Promise<number> {
    const redis = new Redis(TEST_REDIS_URL);
    try {
      let sum = 0;
      for (const v of ['1', '2']) {
        const k = interactiveKeys(prefix, 'mlp', v);
        sum += Number((field === 'queued' ? await redis.get(k.queued) : await redis.hget(k.tenants, field.tenant)) ?? 0);
      }
      return sum;
    } finally {
      redis.disconnect();
    }
  }

  it('MAX_QUEUE_DEPTH=40: 30 jobs to version 1 through one and 30 to version 2 through the other, at once, leave exactly 40 queued', async () => {
    const [a, b] = [await blindWriter({ maxQueueDepth: 40 }), await blindWriter({ maxQueueDepth: 40 })];
    const [onA, onB] = await Promise.all([burst(a, '1', 30), burst(b, '2', 30)]);
    // Each one blind to the other's queue, both used to take all 30: 60 queued.
    expect(onA + onB, `accepted ${onA} + ${onB}`).to.equal(40);
    expect(await queued('queued')).to.equal(40);
  });

  it('TENANT_MAX_QUEUED=20: 15 jobs of one tenant to each version through each gateway, at once, leave exactly 20 of it queued', async () => {
    const [a, b] = [await blindWriter({ tenantMaxQueued: 20 }), await blindWriter({ tenantMaxQueued: 20 })];
    const [onA, onB, otherA] = await Promise.all([burst(a, '1', 15, 'ta'), burst(b, '2', 15, 'ta'), burst(a, '2', 5, 'tb')]);
    expect(onA + onB, `accepted ${onA} + ${onB}`).to.equal(20);
    expect(await queued({ tenant: 'ta' })).to.equal(20);
    expect(otherA, 'another tenant’s jobs are not held back by it').to.equal(5);
  });

  it('within a queue’s share of the limits no lock is taken: a write goes through while a dead gateway holds it; past its share, once the lock expires', async () => {
    const w = await blindWriter({ maxQueueDepth: 40 });
    const lock = keys(prefix).limitsLock;
    const redis = new Redis(TEST_REDIS_URL);
    connections.push(redis);
    // A gateway that died holding the lock: its key lapses by itself.
    await redis.set(lock, 'a-dead-gateway', 'PX', 1500);
    expect(await burst(w, '1', 20), 'within the share (40 / 2 queues)').to.equal(20);
    expect(await redis.get(lock), 'the write within its share did not wait for the lock').to.equal('a-dead-gateway');
    const lapsesIn = await redis.pttl(lock);
    expect(lapsesIn).to.be.greaterThan(0);
    const started = performance.now();
    expect(await burst(w, '2', 25), 'past the share: counted afresh under the lock').to.equal(20);
    expect(performance.now() - started, 'it waited for the dead holder’s key to lapse').to.be.at.least(lapsesIn - 20);
    expect(await redis.get(lock), 'and let the lock go').to.equal(null);
    expect(await queued('queued')).to.equal(40);
  });
});
