import { expect } from 'chai';
import { allowanceInstances, DEPTH_ALLOWANCE_FIELD, interactiveKeys, keys } from '@infer/contract';
import { useLimitsRig } from './helpers/limits.js';

/**
 * MAX_QUEUE_DEPTH and TENANT_MAX_QUEUED are over every model version's
 * queue, and each queue's script counts only its own. Each queue holds an
 * allowance of each limit, the allowances adding up to at most the limit,
 * moved only under the limits lock. These tests take two gateways (two
 * writers, two connections) each writing to its own queue at the same
 * moment: the limits hold exactly.
 */

describe('envelopes: the limits across queues, two gateways writing to two queues at once', function () {
  this.timeout(30_000);
  const rig = useLimitsRig('limits');

  async function allowances(): Promise<number[]> {
    const redis = rig().connection();
    return Promise.all(['1', '2'].map(async (v) => allowanceInstances(await redis.hget(interactiveKeys(rig().prefix, 'mlp', v).meta, DEPTH_ALLOWANCE_FIELD))));
  }

  it('MAX_QUEUE_DEPTH=40: 30 jobs to version 1 through one and 30 to version 2 through the other, at once, leave exactly 40 queued', async () => {
    const [a, b] = [rig().writer({ maxQueueDepth: 40 }), rig().writer({ maxQueueDepth: 40 })];
    const [onA, onB] = await Promise.all([rig().burst(a, '1', 30), rig().burst(b, '2', 30)]);
    expect(onA + onB, `accepted ${onA} + ${onB}`).to.equal(40);
    expect(await rig().queued('queued')).to.equal(40);
    const held = await allowances();
    expect(held[0]! + held[1]!, `allowances ${held.join(' + ')}`).to.equal(40);
  });

  it('TENANT_MAX_QUEUED=20: 15 jobs of one tenant to each version through each gateway, at once, leave exactly 20 of it queued', async () => {
    const [a, b] = [rig().writer({ tenantMaxQueued: 20 }), rig().writer({ tenantMaxQueued: 20 })];
    const [onA, onB, otherA] = await Promise.all([rig().burst(a, '1', 15, 'ta'), rig().burst(b, '2', 15, 'ta'), rig().burst(a, '2', 5, 'tb')]);
    expect(onA + onB, `accepted ${onA} + ${onB}`).to.equal(20);
    expect(await rig().queued({ tenant: 'ta' })).to.equal(20);
    expect(otherA, 'another tenant’s jobs are not held back by it').to.equal(5);
  });

  it('room moves to the queue that needs it: unused allowance is taken back from the other queue, never below its count', async () => {
    const [a, b] = [rig().writer({ maxQueueDepth: 40 }), rig().writer({ maxQueueDepth: 40 })];
    expect(await rig().burst(a, '1', 5)).to.equal(5);
    // Version 1 was given room beyond its 5 (a share of the limit); version 2 takes what it needs back.
    expect(await rig().burst(b, '2', 35)).to.equal(35);
    expect(await rig().burst(a, '1', 10), 'the limit is reached').to.equal(0);
    const held = await allowances();
    expect(held, 'each queue allowed exactly what it holds').to.deep.equal([5, 35]);
  });

  it('an envelope within its queue’s allowance takes no lock (it goes through while a dead gateway holds it); one past it, once the lock lapses', async () => {
    const w = rig().writer({ maxQueueDepth: 40 });
    // The queue's first envelope takes the lock for an allowance: its 10, and a share of the limit (20) more.
    expect(await rig().burst(w, '1', 10)).to.equal(10);
    expect(await allowances()).to.deep.equal([30, 0]);
    const redis = rig().connection();
    const lock = keys(rig().prefix).limitsLock;
    // A gateway that died holding the lock: its key lapses by itself.
    await redis.set(lock, 'a-dead-gateway', 'PX', 1500);
    expect(await rig().burst(w, '1', 15), 'within the allowance').to.equal(15);
    expect(await redis.get(lock), 'the write within its allowance did not wait for the lock').to.equal('a-dead-gateway');
    const lapsesIn = await redis.pttl(lock);
    expect(lapsesIn).to.be.greaterThan(0);
    const started = performance.now();
    // Version 2 has no allowance: the pool's 10 and version 1's unused 5.
    expect(await rig().burst(w, '2', 25), 'past the allowance: room made under the lock').to.equal(15);
    expect(performance.now() - started, 'it waited for the dead holder’s key to lapse').to.be.at.least(lapsesIn - 20);
    expect(await redis.get(lock), 'and let the lock go').to.equal(null);
    expect(await rig().queued('queued')).to.equal(40);
  });
});
