import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys } from '@infer/contract';
import { candidateQueue } from '@infer/job-store';
import { ModelControl, advanceRollouts, newRolloutId, stepRouting, type ReadCandidateQueue, type StoredRollout } from '@infer/model-control';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';

/**
 * docs/rollouts.md: a step in which no job of the candidate ended is held,
 * unless the candidate takes jobs and serves none: nothing of it running,
 * its oldest queued job waiting longer than a step, while the versions it
 * replaces ended theirs. A healthy candidate whose single run lasts longer
 * than step_seconds (a slow model, as slow as the versions it replaces) has
 * a job running and its next one queued behind it: that step is held until
 * the run ends, and judged on its figures then.
 *
 * Set up on ModelControl and the candidate's real queue keys, as FETCH
 * leaves them (an envelope in `active` under a lock, another in `wait`).
 */
const queueOf = (redis: Redis, prefix: string): ReadCandidateQueue => (m, v) => candidateQueue(redis, prefix, m, v);

describe('rollouts: a held step whose candidate is running a job longer than the step', function () {
  this.timeout(20_000);
  let prefix: string;
  let redis: Redis;
  beforeEach(() => {
    prefix = uniquePrefix('rollout-held-step');
    redis = new Redis(TEST_REDIS_URL);
  });
  afterEach(async () => {
    redis.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  /**
   * A rollout of version 2 in step 0, its 5 s up; version 1 ended 40 jobs in it, each 6 s end to end. The
   * candidate took envelope A 5.8 s ago (its lock held, or lapsed) and envelope B waits behind it, 5.5 s old.
   * Judged now: the rollout as it is after.
   */
  async function judgedWithEnvelopeA(lockHeld: boolean): Promise<StoredRollout> {
    const control = new ModelControl(redis, prefix);
    const now = Date.now();
    const r: StoredRollout = {
      id: newRolloutId(),
      model: 'mlp',
      version: '2',
      from: { routing: { '1': 100 }, routing_source: 'explicit' },
      steps: [10, 100],
      step_seconds: 5,
      max_error_rate: 0.01,
      max_p50_latency_ratio: 2,
      step: 0,
      state: 'running',
      started_at: now - 6_000,
      step_started_at: now - 6_000,
      ended_at: null,
      reason: null,
    };
    expect(await control.startRollout(r, stepRouting(r, 10), 'ops', null)).to.equal('started');
    await control.recordFigures('mlp', { id: r.id, step: 0 }, '1', 40, 0, Array(40).fill(6_000));
    const k = interactiveKeys(prefix, 'mlp', '2');
    await redis.hset(k.base + 'A', 'n', 1, 'timestamp', now - 5_900, 'processedOn', now - 5_800, 'ft', now - 5_800, 'ats', 1);
    if (lockHeld) await redis.set(k.base + 'A:lock', 'worker-token', 'PX', 30_000);
    await redis.lpush(k.active, 'A');
    await redis.hset(k.base + 'B', 'n', 1, 'timestamp', now - 5_500);
    await redis.lpush(k.wait, 'B');
    await advanceRollouts(control, ['mlp'], now, queueOf(redis, prefix));
    return (await control.rollout('mlp', r.id))!;
  }

  it('holds the step while the candidate is running a job (one of its workers took it, its lock is live)', async () => {
    const after = await judgedWithEnvelopeA(true);
    expect(
      { state: after.state, step: after.step },
      `a candidate running a job (as slow as the replaced version's) was judged "serving none": ${after.reason}`,
    ).to.deep.equal({ state: 'running', step: 0 });
  });

  it('rolls back once nothing of the candidate runs (the lock of its taken envelope lapsed: its worker is gone)', async () => {
    const after = await judgedWithEnvelopeA(false);
    expect(after.state).to.equal('rolled_back');
    expect(after.reason).to.match(/version 2 ended no job in step 0 while the versions it replaces ended 40/);
  });
});
