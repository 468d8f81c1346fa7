import { expect } from 'chai';
import { Redis } from 'ioredis';
import { apportion, ControlView, ModelControl, stepRouting, toHundred, WeightedPicker, type Weights } from '@infer/model-control';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';

/** The arithmetic of routing weights (what rollouts write and gateways pick by), and how processes learn of a change. */

const sum = (w: Weights) => Object.values(w).reduce((a, b) => a + b, 0);
const from = (routing: Weights) => ({ routing, routing_source: 'explicit' as const });

describe('routing weights', () => {
  it('apportion gives integers summing to the total, largest remainder first, ties to the higher version', () => {
    expect(toHundred({ 1: 1, 2: 1, 3: 1 })).to.deep.equal({ 1: 33, 2: 33, 3: 34 });
    expect(apportion({ 1: 30, 2: 30, 3: 30, 4: 10 }, 5)).to.deep.equal({ 1: 1, 2: 1, 3: 2, 4: 1 });
    // A share that rounds to nothing is left out, not kept at 0.
    expect(apportion({ 1: 1, 2: 1000 }, 100)).to.deep.equal({ 2: 100 });
    expect(apportion({}, 100)).to.deep.equal({});
  });

  it("a rollout step gives the candidate its percent and the replaced versions exactly the rest, as they shared it", () => {
    for (const percent of [0, 1, 5, 10, 50, 95, 99, 100]) {
      for (const routing of [{ 1: 30, 2: 30, 3: 30, 4: 10 }, { 2: 100 }, { 1: 90, 2: 10 }, { 1: 1, 2: 1, 3: 1 }] as Weights[]) {
        const step = stepRouting({ version: '5', from: from(routing) }, percent);
        expect(sum(step), `${percent}% over ${JSON.stringify(routing)}: ${JSON.stringify(step)}`).to.equal(100);
        expect(step['5'] ?? 0).to.equal(percent);
      }
    }
    // 95% over four versions: the 5 left are shared, none of the four is dropped.
    expect(stepRouting({ version: '5', from: from({ 1: 30, 2: 30, 3: 30, 4: 10 }) }, 95)).to.deep.equal({ 1: 1, 2: 1, 3: 2, 4: 1, 5: 95 });
    // The candidate already in the routing, or nothing else to share with.
    expect(stepRouting({ version: '2', from: from({ 1: 80, 2: 20 }) }, 50)).to.deep.equal({ 1: 50, 2: 50 });
    expect(stepRouting({ version: '2', from: from({}) }, 10)).to.deep.equal({ 2: 100 });
  });

  it('the picker follows the weights exactly over every 100 picks', () => {
    const picker = new WeightedPicker();
    const counts: Record<string, number> = {};
    for (let i = 0; i < 1000; i++) {
      const v = picker.pick({ 1: 90, 2: 7, 3: 3 })!;
      counts[v] = (counts[v] ?? 0) + 1;
    }
    expect(counts).to.deep.equal({ 1: 900, 2: 70, 3: 30 });
    // The same weights in a new object (routing is recomputed each second) keep the round; new weights start one.
    const again = new WeightedPicker();
    const order = Array.from({ length: 10 }, () => again.pick({ 1: 50, 2: 50 }));
    expect(order).to.deep.equal(['1', '2', '1', '2', '1', '2', '1', '2', '1', '2']);
    expect(again.pick({ 1: 100 })).to.equal('1');
    expect(again.pick({})).to.equal(undefined);
  });
});

describe('control view: a change whose generation bump was lost', () => {
  let redis: Redis;
  let prefix: string;
  before(() => {
    redis = new Redis(TEST_REDIS_URL);
    prefix = uniquePrefix('view');
  });
  after(async () => {
    redis.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it('is seen at the next full read, which comes every resync interval even when the counter did not move', async () => {
    const control = new ModelControl(redis, prefix);
    await control.setRouting('mlp', { 1: 100 }, 'test');
    const gated = new ControlView(control);
    const resyncing = new ControlView(control, 0);
    for (const view of [gated, resyncing]) await view.refresh(['mlp']);
    // A writer died between its change and the bump: the routing moved, the counter did not.
    const routingKey = `${prefix}:{m:mlp}:routing`;
    await redis.multi().del(routingKey).hset(routingKey, { 2: 100 }).exec();
    expect(await gated.refresh(['mlp'])).to.equal(false);
    expect(gated.of('mlp').routing).to.deep.equal({ 1: 100 });
    expect(await resyncing.refresh(['mlp'])).to.equal(true);
    expect(resyncing.of('mlp').routing).to.deep.equal({ 2: 100 });
  });
});
