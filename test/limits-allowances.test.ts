import { expect } from 'chai';
import { keys } from '@infer/contract';
import { useLimitsRig } from './helpers/limits.js';

/**
 * MAX_QUEUE_DEPTH and TENANT_MAX_QUEUED at the writer level, in sequences
 * that passed the limits when each queue could fill a fixed share of them
 * with the other queues counted as a gateway last read them: a write that
 * took one queue past its share, then another gateway writing to another
 * queue; a gateway that did not know of a queue yet. docs/api.md POST
 * /v1/jobs: the limits "hold exactly across any number of gateways".
 */
describe('limits: allowances, two gateways writing one after the other', function () {
  this.timeout(30_000);
  const rig = useLimitsRig('allow');

  it('MAX_QUEUE_DEPTH=40: a large write through one gateway, then one to the other queue through a gateway that wrote a moment before, hold the limit', async () => {
    const a = rig().writer({ maxQueueDepth: 40 });
    const b = rig().writer({ maxQueueDepth: 40 });
    const started = performance.now();
    // Gateway b submits one job (version 2's allowance made).
    expect(await rig().burst(b, '2', 1)).to.equal(1);
    // Gateway a takes 35 for version 1: past its allowance, so under the lock: 35 + 1 fit.
    expect(await rig().burst(a, '1', 35)).to.equal(35);
    // Gateway b, a few ms later, 19 jobs for version 2: only the 4 left of the limit fit.
    const onB = await rig().burst(b, '2', 19);
    const elapsed = performance.now() - started;
    const queued = await rig().queued('queued');
    expect(queued, `${queued} queued for MAX_QUEUE_DEPTH 40 (b took ${onB} more; all within ${elapsed.toFixed(0)} ms)`).to.equal(40);
  });

  it('TENANT_MAX_QUEUED=20: the same sequence for one tenant holds its cap', async () => {
    const a = rig().writer({ tenantMaxQueued: 20 });
    const b = rig().writer({ tenantMaxQueued: 20 });
    expect(await rig().burst(b, '2', 1, 'ta')).to.equal(1);
    expect(await rig().burst(a, '1', 18, 'ta')).to.equal(18);
    const onB = await rig().burst(b, '2', 9, 'ta');
    const queued = await rig().queued({ tenant: 'ta' });
    expect(queued, `tenant ta has ${queued} queued for a cap of 20 (b took ${onB} more)`).to.equal(20);
  });

  it('MAX_QUEUE_DEPTH=40: a gateway that does not know of a queue yet (a version just appeared) holds the limit with the others', async () => {
    // Gateway a routes to version 1 only (version 2 not loaded there yet); b to both.
    const a = rig().writer({ maxQueueDepth: 40 }, ['1']);
    expect(await rig().burst(a, '1', 1)).to.equal(1);
    const b = rig().writer({ maxQueueDepth: 40 });
    expect(await rig().burst(b, '2', 1)).to.equal(1);
    // a knows one queue only; the allowances are in Redis, so it takes what is left, no more.
    const onA = await rig().burst(a, '1', 39);
    const onB = await rig().burst(b, '2', 18);
    const queued = await rig().queued('queued');
    expect(queued, `${queued} queued for MAX_QUEUE_DEPTH 40 (a ${1 + onA}, b ${1 + onB})`).to.equal(40);
  });

  it('a submit within its queue’s allowance, far from MAX_QUEUE_DEPTH (22 of 1000 queued), does not wait for the limits lock', async () => {
    // 50 versions registered over the deployment's life (removed since): the registry never forgets them.
    const admin = rig().connection();
    await admin.sadd(keys(rig().prefix).interactiveQueues, ...Array.from({ length: 48 }, (_, i) => JSON.stringify(['old-model', String(i + 1)])));
    const w = rig().writer({ maxQueueDepth: 1000 });
    expect(await rig().burst(w, '1', 21)).to.equal(21);
    // Version 2's first envelope takes the lock for its allowance; the next ones within it do not.
    expect(await rig().burst(w, '2', 1)).to.equal(1);
    // A gateway that died holding the lock: its key lapses by itself in 1.5 s.
    await admin.set(keys(rig().prefix).limitsLock, 'a-dead-gateway', 'PX', 1500);
    const started = performance.now();
    expect(await rig().burst(w, '2', 1)).to.equal(1);
    const waited = performance.now() - started;
    expect(waited, `a submit with 21 of 1000 queued waited ${waited.toFixed(0)} ms for the limits lock`).to.be.below(500);
  });
});
