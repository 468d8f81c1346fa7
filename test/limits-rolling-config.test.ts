import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, newJobId, queueTag, type EnvelopeJob } from '@infer/contract';
import { ModelRepository, type ModelVersion } from '@infer/models';
import { decodeInput } from '@infer/tensors';
import { EnvelopeWriter } from '../apps/gateway/src/jobs/envelope-writer.js';
import { seededFloats } from './helpers/ort-reference.js';
import { deletePrefix, SHIPPED_MODELS, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';

/**
 * A rolling config change (one gateway with MAX_QUEUE_DEPTH / TENANT_MAX_QUEUED set to one value,
 * another to another, both serving at once). README: MAX_QUEUE_DEPTH is "queued instances above which submits
 * answer 503 queue_full, across every model queue (held exactly across gateways)". Whatever the mix, a
 * gateway should never accept a job that takes the queues past its own limit, and the total should never
 * pass the larger of the two limits.
 */
describe('limits: a rolling change of MAX_QUEUE_DEPTH / TENANT_MAX_QUEUED', function () {
  this.timeout(30_000);
  let repo: ModelRepository;
  let prefix: string;
  const connections: Redis[] = [];

  before(async () => {
    repo = await ModelRepository.load(SHIPPED_MODELS, { only: ['mlp'] });
  });
  beforeEach(() => {
    prefix = uniquePrefix('roll');
  });
  afterEach(async () => {
    for (const c of connections.splice(0)) c.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });
  after(async () => {
    await repo.close();
  });

  function writer(limits: { maxQueueDepth?: number; tenantMaxQueued?: number }): EnvelopeWriter {
    const redis = new Redis(TEST_REDIS_URL);
    connections.push(redis);
    const w = new EnvelopeWriter({
      redis,
      prefix,
      resultTtlMs: 60_000,
      maxQueueDepth: limits.maxQueueDepth ?? 1_000_000,
      tenantMaxQueued: limits.tenantMaxQueued,
      gatewayChannel: `${prefix}:gateway:${connections.length}`,
    });
    for (const v of ['1', '2']) w.queueOf(repo.resolve('mlp', v));
    return w;
  }

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

  async function total(field: 'queued' | { tenant: string }): Promise<number> {
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

  it('MAX_QUEUE_DEPTH 10 on one gateway, 20 on the other: the queues never hold more than 20', async () => {
    const a = writer({ maxQueueDepth: 10 });
    const b = writer({ maxQueueDepth: 20 });
    // a's first job to version 1: its queue gets an allowance of the 10-pool with spare.
    expect(await burst(a, '1', 1)).to.equal(1);
    // b fills version 2 up to its limit of 20 less what is queued (1).
    const onB = await burst(b, '2', 25);
    // a writes to version 1, within the allowance it holds of its own pool: no lock, no look at the total.
    const onA = await burst(a, '1', 10);
    const queued = await total('queued');
    expect(queued, `${queued} queued with limits 10 and 20 (b took ${onB}, then a ${onA} more)`).to.be.at.most(20);
  });

  it('TENANT_MAX_QUEUED 5 on one gateway, 10 on the other: the tenant never has more than 10 queued', async () => {
    const a = writer({ tenantMaxQueued: 5 });
    const b = writer({ tenantMaxQueued: 10 });
    expect(await burst(a, '1', 1, 'ta')).to.equal(1);
    const onB = await burst(b, '2', 12, 'ta');
    const onA = await burst(a, '1', 5, 'ta');
    const queued = await total({ tenant: 'ta' });
    expect(queued, `tenant has ${queued} queued with caps 5 and 10 (b took ${onB}, then a ${onA} more)`).to.be.at.most(10);
  });
});
