import { expect } from 'chai';
import { useLimitsRig } from './helpers/limits.js';

/**
 * A rolling config change (one gateway with MAX_QUEUE_DEPTH / TENANT_MAX_QUEUED set to one value,
 * another to another, both serving at once). README: MAX_QUEUE_DEPTH is "queued instances above which submits
 * answer 503 queue_full, across every model queue (held exactly across gateways)". Whatever the mix, a
 * gateway should never accept a job that takes the queues past its own limit, and the total should never
 * pass the larger of the two limits.
 */
describe('limits: a rolling change of MAX_QUEUE_DEPTH / TENANT_MAX_QUEUED', function () {
  this.timeout(30_000);
  const rig = useLimitsRig('roll');

  it('MAX_QUEUE_DEPTH 10 on one gateway, 20 on the other: the queues never hold more than 20', async () => {
    const a = rig().writer({ maxQueueDepth: 10 });
    const b = rig().writer({ maxQueueDepth: 20 });
    // a's first job to version 1: its queue gets an allowance of the 10-pool with spare.
    expect(await rig().burst(a, '1', 1)).to.equal(1);
    // b fills version 2 up to its limit of 20 less what is queued (1).
    const onB = await rig().burst(b, '2', 25);
    // a writes to version 1, within the allowance it holds of its own pool: no lock, no look at the total.
    const onA = await rig().burst(a, '1', 10);
    const queued = await rig().queued('queued');
    expect(queued, `${queued} queued with limits 10 and 20 (b took ${onB}, then a ${onA} more)`).to.be.at.most(20);
  });

  it('TENANT_MAX_QUEUED 5 on one gateway, 10 on the other: the tenant never has more than 10 queued', async () => {
    const a = rig().writer({ tenantMaxQueued: 5 });
    const b = rig().writer({ tenantMaxQueued: 10 });
    expect(await rig().burst(a, '1', 1, 'ta')).to.equal(1);
    const onB = await rig().burst(b, '2', 12, 'ta');
    const onA = await rig().burst(a, '1', 5, 'ta');
    const queued = await rig().queued({ tenant: 'ta' });
    expect(queued, `tenant has ${queued} queued with caps 5 and 10 (b took ${onB}, then a ${onA} more)`).to.be.at.most(10);
  });
});
