import { expect } from 'chai';
import { Redis } from 'ioredis';
import { allowanceInstances, DEPTH_ALLOWANCE_FIELD, interactiveKeys, newJobId, queueTag, type EnvelopeJob } from '@infer/contract';
import { EnvelopeQueue, JobStore } from '@infer/job-store';
import { ModelRepository, type ModelVersion } from '@infer/models';
import { decodeInput } from '@infer/tensors';
import { EnvelopeWriter } from '../apps/gateway/src/jobs/envelope-writer.js';
import { seededFloats } from './helpers/ort-reference.js';
import { deletePrefix, SHIPPED_MODELS, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';

/**
 * Three gateways (writers) over four queues, three tenants, bursting at once while a consumer takes
 * envelopes and jobs are canceled. Sampled atomically (MULTI) all along: the allowances of each limit add up
 * to at most the limit, and so do the counts; at the end the counts agree with the jobs still queued.
 */
const LIMIT = 30;
const CAP = 12;
const VERSIONS = ['1', '2', '3', '4'];
const TENANTS = ['ta', 'tb', 'tc'];

describe('limits: three gateways, four queues, takes and cancels', function () {
  this.timeout(50_000);
  let repo: ModelRepository;
  let prefix: string;
  const connections: Redis[] = [];

  before(async () => {
    repo = await ModelRepository.load(SHIPPED_MODELS, { only: ['mlp'] });
  });
  beforeEach(() => {
    prefix = uniquePrefix('stress');
  });
  afterEach(async () => {
    for (const c of connections.splice(0)) c.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });
  after(async () => {
    await repo.close();
  });

  function conn(): Redis {
    const r = new Redis(TEST_REDIS_URL);
    connections.push(r);
    return r;
  }
  const model = (v: string): ModelVersion => ({ ...repo.resolve('mlp', '1'), version: v });

  function writer(): EnvelopeWriter {
    const w = new EnvelopeWriter({ redis: conn(), prefix, resultTtlMs: 60_000, maxQueueDepth: LIMIT, tenantMaxQueued: CAP, gatewayChannel: `${prefix}:gateway:${connections.length}` });
    for (const v of VERSIONS) w.queueOf(model(v));
    return w;
  }

  async function sample(r: Redis): Promise<{ allow: number; queued: number; tenantAllow: Record<string, number>; tenantQueued: Record<string, number> }> {
    const m = r.multi();
    for (const v of VERSIONS) {
      const k = interactiveKeys(prefix, 'mlp', v);
      m.hget(k.meta, DEPTH_ALLOWANCE_FIELD);
      m.get(k.queued);
      m.hgetall(k.allowances);
      m.hgetall(k.tenants);
    }
    const res = (await m.exec())!.map(([e, x]) => {
      if (e) throw e;
      return x;
    });
    const out = { allow: 0, queued: 0, tenantAllow: {} as Record<string, number>, tenantQueued: {} as Record<string, number> };
    for (let i = 0; i < VERSIONS.length; i++) {
      out.allow += allowanceInstances(res[4 * i] as string | null);
      out.queued += Number(res[4 * i + 1] ?? 0);
      const al = res[4 * i + 2] as Record<string, string>;
      for (const t of TENANTS) out.tenantAllow[t] = (out.tenantAllow[t] ?? 0) + allowanceInstances(al[t]);
      const tq = res[4 * i + 3] as Record<string, string>;
      for (const t of TENANTS) out.tenantQueued[t] = (out.tenantQueued[t] ?? 0) + Number(tq[t] ?? 0);
    }
    return out;
  }

  it('sum of allowances and of counts stay within MAX_QUEUE_DEPTH and TENANT_MAX_QUEUED; counts agree with the jobs', async () => {
    const writers = [writer(), writer(), writer()];
    const sampler = conn();
    const store = new JobStore(conn(), { prefix, resultTtlMs: 60_000 } as never);
    const queues = VERSIONS.map((v) => new EnvelopeQueue(conn(), { prefix, model: 'mlp', version: v, resultTtlMs: 60_000 }));
    const violations: string[] = [];
    const codes = new Map<string, number>();
    const accepted: string[] = [];
    let stop = false;
    const sampling = (async () => {
      while (!stop) {
        const s = await sample(sampler);
        if (s.allow > LIMIT) violations.push(`allowances ${s.allow}`);
        if (s.queued > LIMIT) violations.push(`queued ${s.queued}`);
        for (const t of TENANTS) {
          if (s.tenantAllow[t]! > CAP) violations.push(`${t} allowances ${s.tenantAllow[t]}`);
          if (s.tenantQueued[t]! > CAP) violations.push(`${t} queued ${s.tenantQueued[t]}`);
        }
        await new Promise((r) => setImmediate(r));
      }
    })();
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    for (let round = 0; round < 40; round++) {
      const adds: Promise<unknown>[] = [];
      for (const w of writers) {
        const v = VERSIONS[rnd(VERSIONS.length)]!;
        const n = 1 + rnd(8);
        const m = model(v);
        for (let i = 0; i < n; i++) {
          const tenant = TENANTS[rnd(TENANTS.length)]!;
          const job: EnvelopeJob = { id: newJobId(queueTag('mlp', v)), tenant, created_at: Date.now() };
          adds.push(
            w.add(m, job, [decodeInput(Array.from(seededFloats(64, i)), m.inputs[0]!)]).then(
              () => {
                codes.set('202', (codes.get('202') ?? 0) + 1);
                accepted.push(job.id);
              },
              (err: { code?: string; status?: number }) => codes.set(`${err.status} ${err.code}`, (codes.get(`${err.status} ${err.code}`) ?? 0) + 1),
            ),
          );
        }
      }
      // A consumer takes from one queue; a client cancels one accepted job.
      if (round % 3 === 0) adds.push(queues[rnd(queues.length)]!.fetch(`tok-${round}`, 30_000, 1 + rnd(6), 4));
      if (round % 2 === 1 && accepted.length > 0) {
        const id = accepted[rnd(accepted.length)]!;
        adds.push(
          store.read(id).then((l) => (l.kind === 'pending' ? store.cancel(l, Buffer.from('{"status":"canceled"}')) : undefined)),
        );
      }
      await Promise.all(adds);
    }
    stop = true;
    await sampling;
    expect(violations.slice(0, 10), JSON.stringify([...codes])).to.deep.equal([]);
    expect(codes.get('503 queue_full') ?? 0, JSON.stringify([...codes])).to.be.above(0);
    expect(codes.get('429 quota_exceeded') ?? 0, JSON.stringify([...codes])).to.be.above(0);
    for (const k of codes.keys()) expect(k).to.be.oneOf(['202', '503 queue_full', '429 quota_exceeded']);
    // Counts agree with the jobs: jobs in envelopes still in wait, never taken, not canceled.
    const r = sampler;
    let queuedJobs = 0;
    const perTenant: Record<string, number> = {};
    for (const v of VERSIONS) {
      const k = interactiveKeys(prefix, 'mlp', v);
      for (const id of await r.lrange(k.wait, 0, -1)) {
        const [data, x, processedOn] = await r.hmget(k.base + id, 'data', 'x', 'processedOn');
        if (!data || processedOn) continue;
        const canceled = new Set((x ?? '').split(' ').filter(Boolean));
        for (const j of (JSON.parse(data) as { jobs: EnvelopeJob[] }).jobs) {
          if (canceled.has(j.id)) continue;
          queuedJobs++;
          perTenant[j.tenant] = (perTenant[j.tenant] ?? 0) + 1;
        }
      }
    }
    const s = await sample(r);
    expect(s.queued, 'queued count vs jobs').to.equal(queuedJobs);
    for (const t of TENANTS) expect(s.tenantQueued[t], `${t} count vs jobs`).to.equal(perTenant[t] ?? 0);
  });
});
