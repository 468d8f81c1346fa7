import { expect } from 'chai';
import { DEPTH_ALLOWANCE_FIELD, allowanceInstances, interactiveKeys, newJobId, queueTag, type EnvelopeJob } from '@infer/contract';
import { decodeInput } from '@infer/tensors';
import type { EnvelopeWriter } from '../apps/gateway/src/jobs/envelope-writer.js';
import { useLimitsRig, type LimitsRig } from './helpers/limits.js';
import { seededFloats } from './helpers/ort-reference.js';

/**
 * The envelope writer's two paths around the limits lock: jobs of a tenant at
 * its cap set aside for the lock while the other tenants' jobs of the same
 * envelope are written at once (every job answered exactly once, an error
 * mid-way included, caps kept), and headroom taken back from other queues'
 * unused allowance (allowances never past the limit, no lock taken over and
 * over by two busy queues far from it).
 */
const adder = (rig: LimitsRig, w: EnvelopeWriter, version: string) => {
  const model = rig.repo.resolve('mlp', version);
  return (tenant: string, i: number) => {
    const job: EnvelopeJob = { id: newJobId(queueTag('mlp', version)), tenant, created_at: Date.now() };
    return w.add(model, job, [decodeInput(Array.from(seededFloats(64, i)), model.inputs[0]!)]).then(
      () => 'accepted',
      (err: { code?: string; message?: string }) => err.code ?? `error:${err.message}`,
    );
  };
};

/** Counts the writer's lock takes (its private LimitsLock's hold). */
const countLocks = (w: EnvelopeWriter): { n: number } => {
  const counter = { n: 0 };
  const lock = (w as unknown as { lock: { hold: (...a: unknown[]) => unknown } }).lock;
  const hold = lock.hold.bind(lock);
  lock.hold = (...a: unknown[]) => {
    counter.n++;
    return hold(...a);
  };
  return counter;
};

describe('limits: envelope writer, capped tenants set aside', function () {
  this.timeout(30_000);
  const rig = useLimitsRig('lim-env');

  it('three tenants in one envelope, two at their cap: every job answered once, the free tenant’s written, caps kept', async () => {
    const w = rig().writer({ tenantMaxQueued: 3 }, ['1']);
    expect(await rig().burst(w, '1', 3, 'ta')).to.equal(3);
    expect(await rig().burst(w, '1', 3, 'tb')).to.equal(3);
    const add = adder(rig(), w, '1');
    const order = ['ta', 'tc', 'tb', 'tc', 'ta', 'tb', 'tc'];
    const outcomes = await Promise.all(order.map((t, i) => add(t, 10 + i)));
    expect(outcomes).to.deep.equal(['quota_exceeded', 'accepted', 'quota_exceeded', 'accepted', 'quota_exceeded', 'quota_exceeded', 'accepted']);
    expect(await rig().queued({ tenant: 'ta' })).to.equal(3);
    expect(await rig().queued({ tenant: 'tb' })).to.equal(3);
    expect(await rig().queued({ tenant: 'tc' })).to.equal(3);
    expect(await rig().queued('queued')).to.equal(9);
  });

  it('an error thrown after a capped tenant’s jobs were set aside answers those jobs too (none left hanging)', async () => {
    const w = rig().writer({ tenantMaxQueued: 2 }, ['1']);
    expect(await rig().burst(w, '1', 2, 'ta')).to.equal(2);
    const queue = w.queueOf(rig().repo.resolve('mlp', '1'));
    const real = queue.enqueue.bind(queue);
    let calls = 0;
    queue.enqueue = async (e) => {
      calls++;
      if (calls === 2) throw new Error('boom mid-way');
      return real(e);
    };
    const add = adder(rig(), w, '1');
    const outcomes = await Promise.all([add('ta', 1), add('tb', 2), add('ta', 3)]);
    expect(outcomes).to.deep.equal(['error:boom mid-way', 'error:boom mid-way', 'error:boom mid-way']);
  });

  it('capped tenant set aside, then the rest over MAX_QUEUE_DEPTH: what fits is written in arrival order, the rest refused', async () => {
    const w = rig().writer({ tenantMaxQueued: 2, maxQueueDepth: 4 }, ['1']);
    expect(await rig().burst(w, '1', 2, 'ta')).to.equal(2);
    const add = adder(rig(), w, '1');
    const outcomes = await Promise.all([add('tb', 1), add('ta', 2), add('tc', 3), add('tb', 4)]);
    expect(outcomes).to.deep.equal(['accepted', 'quota_exceeded', 'accepted', 'queue_full']);
    expect(await rig().queued('queued')).to.equal(4);
  });
});

describe('limits: makeRoom headroom taken back from other queues', function () {
  this.timeout(60_000);
  const rig = useLimitsRig('lim-room');

  const allowances = async (r: LimitsRig) => {
    const redis = r.connection();
    let sum = 0;
    for (const v of ['1', '2']) sum += allowanceInstances(await redis.hget(interactiveKeys(r.prefix, 'mlp', v).meta, DEPTH_ALLOWANCE_FIELD));
    return sum;
  };
  const tenantAllowances = async (r: LimitsRig, tenant: string) => {
    const redis = r.connection();
    let sum = 0;
    for (const v of ['1', '2']) sum += allowanceInstances(await redis.hget(interactiveKeys(r.prefix, 'mlp', v).allowances, tenant));
    return sum;
  };

  it('two gateways bursting into two queues to the limit: allowances never add up past MAX_QUEUE_DEPTH, every slot usable', async () => {
    const a = rig().writer({ maxQueueDepth: 100 });
    const b = rig().writer({ maxQueueDepth: 100 });
    let accepted = 0;
    for (let round = 0; round < 30; round++) {
      const [x, y] = await Promise.all([rig().burst(a, '1', 3 + (round % 4)), rig().burst(b, '2', 1 + (round % 5))]);
      accepted += x + y;
      const sum = await allowances(rig());
      expect(sum, `round ${round}`).to.be.at.most(100);
      expect(await rig().queued('queued')).to.be.at.most(100);
    }
    expect(accepted).to.equal(100);
    expect(await rig().queued('queued')).to.equal(100);
  });

  it('TENANT_MAX_QUEUED=10 over two queues from two gateways: tenant allowances never add past the cap', async () => {
    const a = rig().writer({ tenantMaxQueued: 10 });
    const b = rig().writer({ tenantMaxQueued: 10 });
    let accepted = 0;
    for (let round = 0; round < 8; round++) {
      const [x, y] = await Promise.all([rig().burst(a, '1', 2, 'tq'), rig().burst(b, '2', 1, 'tq')]);
      accepted += x + y;
      expect(await tenantAllowances(rig(), 'tq'), `round ${round}`).to.be.at.most(10);
    }
    expect(accepted).to.equal(10);
    expect(await rig().queued({ tenant: 'tq' })).to.equal(10);
  });

  it('two busy queues far from the limit (≤ 40% of 1000) do not take the lock over and over (no ping-pong reclaiming)', async () => {
    const a = rig().writer({ maxQueueDepth: 1000 });
    const b = rig().writer({ maxQueueDepth: 1000 });
    const la = countLocks(a);
    const lb = countLocks(b);
    for (let round = 0; round < 40; round++) {
      const [x, y] = await Promise.all([rig().burst(a, '1', 5), rig().burst(b, '2', 5)]);
      expect(x + y).to.equal(10);
    }
    expect(la.n + lb.n, `locks: gateway a ${la.n}, gateway b ${lb.n}`).to.be.at.most(6);
  });
});
