import { expect } from 'chai';
import { Redis } from 'ioredis';
import { advanceRollouts, ModelControl, newRolloutId, stepRouting, type StoredRollout } from '@infer/model-control';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';

/**
 * docs/api.md, POST /v1/models/{name}/rollouts: `max_p50_latency_ratio`:
 * "roll back when the version's median latency (submit to end) in a step is
 * over this many times the replaced versions'"; docs/rollouts.md: "If …
 * version 3's median latency (submit to end) is over max_p50_latency_ratio
 * times that of the versions it replaces … the rollout is rolled_back".
 */

function rollout(now: number): StoredRollout {
  return {
    id: newRolloutId(),
    model: 'mlp',
    version: '2',
    from: { routing: { '1': 100 }, routing_source: 'explicit' },
    steps: [10, 100],
    step_seconds: 1,
    max_error_rate: 0.01,
    max_p50_latency_ratio: 2,
    step: 0,
    state: 'running',
    started_at: now,
    step_started_at: now,
    ended_at: null,
    reason: null,
  };
}

describe('rollouts: a step judged on its latency figures', function () {
  let prefix: string;
  let redis: Redis;
  let control: ModelControl;
  beforeEach(() => {
    prefix = uniquePrefix('judge');
    redis = new Redis(TEST_REDIS_URL);
    control = new ModelControl(redis, prefix);
  });
  afterEach(async () => {
    redis.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it('a candidate whose median latency is past the last finite bucket (over 60 s, against 4 ms for the replaced version) is rolled back, not promoted', async () => {
    const now = Date.now();
    const r = rollout(now);
    expect(await control.startRollout(r, stepRouting(r, 10), 'ops', null)).to.equal('started');
    // Step 0: the replaced version answers in 4 ms; every job of the candidate took 90 s, submit to end.
    await control.recordFigures('mlp', { id: r.id, step: 0 }, '1', 90, 0, Array(90).fill(4));
    await control.recordFigures('mlp', { id: r.id, step: 0 }, '2', 10, 0, Array(10).fill(90_000));
    await advanceRollouts(control, ['mlp'], now + 2000);
    const after = (await control.rollout('mlp', r.id))!;
    expect({ state: after.state, step: after.step, routing: await control.routing('mlp') }, `reason: ${after.reason}`).to.deep.equal({
      state: 'rolled_back',
      step: 0,
      routing: { '1': 100 },
    });
    expect(after.reason).to.match(/p50 latency ratio over .* \(over 60000 ms against 5 ms\)/);
    const event = (await control.events('mlp', 100))!.data.find((e) => e.type === 'rollout_rolled_back');
    expect((event!.data as { figures: unknown }).figures).to.deep.equal({
      candidate: { succeeded: 10, failed: 0, p50_ms: null, p50_over_ms: 60_000 },
      replaced: { succeeded: 90, failed: 0, p50_ms: 5 },
    });
  });

  it('two medians past the last bucket say nothing of a ratio: the step goes on', async () => {
    const now = Date.now();
    const r = rollout(now);
    expect(await control.startRollout(r, stepRouting(r, 10), 'ops', null)).to.equal('started');
    await control.recordFigures('mlp', { id: r.id, step: 0 }, '1', 90, 0, Array(90).fill(90_000));
    await control.recordFigures('mlp', { id: r.id, step: 0 }, '2', 10, 0, Array(10).fill(90_000));
    await advanceRollouts(control, ['mlp'], now + 2000);
    const after = (await control.rollout('mlp', r.id))!;
    expect({ state: after.state, step: after.step }, `reason: ${after.reason}`).to.deep.equal({ state: 'running', step: 1 });
  });
});
