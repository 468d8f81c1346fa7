import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, newJobId, queueTag, type EnvelopeJob } from '@infer/contract';
import { ModelRepository, type ModelVersion } from '@infer/models';
import { decodeInput } from '@infer/tensors';
import { EnvelopeWriter } from '../../apps/gateway/src/jobs/envelope-writer.js';
import { seededFloats } from './ort-reference.js';
import { deletePrefix, SHIPPED_MODELS, TEST_REDIS_URL, uniquePrefix } from './platform.js';

/**
 * Envelope writers standing for gateways (each on a connection of its own),
 * over the fixture mlp's queues under one prefix: for the tests of
 * MAX_QUEUE_DEPTH and TENANT_MAX_QUEUED across gateways and queues.
 */
export class LimitsRig {
  private readonly connections: Redis[] = [];

  constructor(
    readonly repo: ModelRepository,
    readonly prefix: string,
  ) {}

  /** A connection closed with the rig. */
  connection(): Redis {
    const redis = new Redis(TEST_REDIS_URL);
    this.connections.push(redis);
    return redis;
  }

  /** A gateway's writer with `versions`' queues open, as a gateway has them from its start (its catalog's onVersion). */
  writer(limits: { maxQueueDepth?: number; tenantMaxQueued?: number }, versions = ['1', '2']): EnvelopeWriter {
    const w = new EnvelopeWriter({
      redis: this.connection(),
      prefix: this.prefix,
      resultTtlMs: 60_000,
      maxQueueDepth: limits.maxQueueDepth ?? 1_000_000,
      tenantMaxQueued: limits.tenantMaxQueued,
      gatewayChannel: `${this.prefix}:gateway:${this.connections.length}`,
    });
    for (const v of versions) w.queueOf(this.repo.resolve('mlp', v));
    return w;
  }

  /** `n` jobs of `tenant` added to `w` in one turn, for mlp `version`: how many it accepted (the others refused for a limit). */
  async burst(w: EnvelopeWriter, version: string, n: number, tenant = 't'): Promise<number> {
    const model: ModelVersion = this.repo.resolve('mlp', version);
    const outcomes = await Promise.allSettled(
      Array.from({ length: n }, (_, i) => {
        const job: EnvelopeJob = { id: newJobId(queueTag('mlp', version)), tenant, created_at: Date.now() };
        return w.add(model, job, [decodeInput(Array.from(seededFloats(64, i)), model.inputs[0]!)]);
      }),
    );
    for (const o of outcomes) if (o.status === 'rejected') expect((o.reason as { code: string }).code).to.be.oneOf(['queue_full', 'quota_exceeded']);
    return outcomes.filter((o) => o.status === 'fulfilled').length;
  }

  /** Instances queued over mlp 1 and 2, or one tenant's. */
  async queued(field: 'queued' | { tenant: string }): Promise<number> {
    const redis = this.connection();
    let sum = 0;
    for (const v of ['1', '2']) {
      const k = interactiveKeys(this.prefix, 'mlp', v);
      sum += Number((field === 'queued' ? await redis.get(k.queued) : await redis.hget(k.tenants, field.tenant)) ?? 0);
    }
    return sum;
  }

  async close(): Promise<void> {
    for (const c of this.connections.splice(0)) c.disconnect();
    await deletePrefix(TEST_REDIS_URL, this.prefix);
  }
}

/** Mocha hooks: the fixture mlp loaded for the suite, a fresh rig (its own prefix) for each test. */
export function useLimitsRig(label: string): () => LimitsRig {
  let repo: ModelRepository;
  let rig: LimitsRig | undefined;
  before(async () => {
    repo = await ModelRepository.load(SHIPPED_MODELS, { only: ['mlp'] });
  });
  beforeEach(() => {
    rig = new LimitsRig(repo, uniquePrefix(label));
  });
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
  });
  after(async () => {
    await repo?.close();
  });
  return () => rig!;
}

/** What the interactive queues of mlp 1 and 2 count under `prefix`: instances queued, per tenant, and jobs indexed (not ended). */
export async function queueCounts(redis: Redis, prefix: string): Promise<{ queued: number; indexed: number; tenants: Record<string, number> }> {
  let queued = 0;
  let indexed = 0;
  const tenants: Record<string, number> = {};
  for (const v of ['1', '2']) {
    const k = interactiveKeys(prefix, 'mlp', v);
    queued += Number((await redis.get(k.queued)) ?? 0);
    indexed += await redis.hlen(k.index);
    for (const [t, n] of Object.entries(await redis.hgetall(k.tenants))) tenants[t] = (tenants[t] ?? 0) + Number(n);
  }
  return { queued, indexed, tenants };
}
