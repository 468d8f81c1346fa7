import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, type Rollout } from '@infer/contract';
import { mlpFeatures } from './helpers/batches.js';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/rollouts.md: a step in which no job of the candidate ended is held
 * (a canary without traffic proves nothing), but a candidate that takes
 * jobs and serves none (its workers hung, say) is rolled back once its
 * oldest queued job has waited longer than a step while the versions it
 * replaces went on serving theirs. Held, it would keep its share of the
 * traffic waiting for ever. The candidate's queue is paused here, as a
 * worker that never takes its jobs would leave it.
 */
const ADMIN = 'rollout-stuck-admin';

describe('rollouts: a candidate that takes jobs and serves none', function () {
  this.timeout(60_000);
  let repo: TempModelRepo | undefined;
  let p: TestPlatform | undefined;
  let redis: Redis | undefined;

  afterEach(async () => {
    redis?.disconnect();
    redis = undefined;
    await p?.close();
    p = undefined;
    repo?.remove();
    repo = undefined;
  });

  const admin = (pathname: string, init: RequestInit = {}) =>
    fetch(p!.baseUrl + pathname, { ...init, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' } });

  it('is rolled back once its oldest queued job has waited longer than a step, the replaced version serving', async () => {
    repo = servedMlpRepo(['1', '2']);
    p = await startPlatform({ models: repo.root, env: { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0.2' } });
    const platform = p;
    redis = new Redis(TEST_REDIS_URL);
    const candidateMeta = interactiveKeys(p.prefix, 'mlp', '2').meta;
    // The candidate's worker takes nothing from now on.
    await redis.hset(candidateMeta, 'paused', '1');

    expect((await admin('/v1/models/mlp/routing', { method: 'PUT', body: JSON.stringify({ weights: { '1': 100 } }) })).status).to.equal(200);
    const res = await admin('/v1/models/mlp/rollouts', { method: 'POST', body: JSON.stringify({ version: '2', steps: [50, 100], step_seconds: 1 }) });
    expect(res.status, await res.clone().text()).to.equal(201);
    const rollout = (await res.json()) as Rollout;

    const versions: string[] = [];
    for (let i = 0; i < 6; i++) {
      const job = await platform.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(i) } }) });
      expect(job.status).to.equal(202);
      versions.push(((await job.json()) as { version: string }).version);
    }
    expect(versions.filter((v) => v === '2').length, `routed to: ${versions.join(',')}`).to.equal(3);

    let last: Rollout | undefined;
    let i = 6;
    await waitUntil(
      async () => {
        // Traffic goes on, as it would: the replaced version's jobs end (counted once the worker's view has the rollout).
        expect((await platform.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(i++) } }) })).status).to.equal(202);
        last = (await (await admin(`/v1/models/mlp/rollouts/${rollout.id}`)).json()) as Rollout;
        return last.state !== 'running';
      },
      20_000,
      'the rollout of a candidate that serves nothing to end',
    ).catch(() => expect(last?.state, `rollout ${rollout.id} still running, held at step ${last?.step}`).to.not.equal('running'));
    expect(last!.state).to.equal('rolled_back');
    expect(last!.reason).to.match(/version 2 ended no job in step 0 while the versions it replaces ended [1-9]\d*, and its oldest queued job has waited \d+\.\d s/);
    // The routing is back to version 1 alone (the gateway's view follows within a second).
    await waitUntil(
      async () => JSON.stringify(((await (await platform.api('/v1/models/mlp')).json()) as { routing: Record<string, number> }).routing) === '{"1":100}',
      5_000,
      'the routing back to version 1',
    );

    // Its queue taken up again, the candidate's jobs run (and the platform closes clean).
    await redis.hdel(candidateMeta, 'paused');
  });

  it('is rolled back too when its one queued job waits behind more canceled envelopes than the oldest-job read looks at', async () => {
    repo = servedMlpRepo(['1', '2']);
    p = await startPlatform({ models: repo.root, env: { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0.2' } });
    const platform = p;
    redis = new Redis(TEST_REDIS_URL);
    const candidateMeta = interactiveKeys(p.prefix, 'mlp', '2').meta;
    await redis.hset(candidateMeta, 'paused', '1');
    expect((await admin('/v1/models/mlp/routing', { method: 'PUT', body: JSON.stringify({ weights: { '1': 100 } }) })).status).to.equal(200);

    // 70 envelopes of one job each (one request at a time), every job canceled while queued: they stay in the
    // queue until a worker takes them. The oldest-job read looks past 64 of them, then only knows the last one's time.
    for (let i = 0; i < 70; i++) {
      const job = await platform.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: '2', input: { features: mlpFeatures(i) } }) });
      expect(job.status).to.equal(202);
      const { id } = (await job.json()) as { id: string };
      expect((await platform.api(`/v1/jobs/${id}/cancel`, { method: 'POST' })).status).to.equal(200);
    }
    expect(await redis.llen(interactiveKeys(p.prefix, 'mlp', '2').wait)).to.equal(70);
    const res = await admin('/v1/models/mlp/rollouts', { method: 'POST', body: JSON.stringify({ version: '2', steps: [50, 100], step_seconds: 1 }) });
    expect(res.status, await res.clone().text()).to.equal(201);
    const rollout = (await res.json()) as Rollout;

    let last: Rollout | undefined;
    let i = 0;
    await waitUntil(
      async () => {
        expect((await platform.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(i++) } }) })).status).to.equal(202);
        last = (await (await admin(`/v1/models/mlp/rollouts/${rollout.id}`)).json()) as Rollout;
        return last.state !== 'running';
      },
      20_000,
      'the rollout of a candidate that serves nothing to end',
    ).catch(() => expect(last?.state, `rollout ${rollout.id} still running, held at step ${last?.step}`).to.not.equal('running'));
    expect(last!.state).to.equal('rolled_back');
    expect(last!.reason).to.match(/version 2 ended no job in step 0 while the versions it replaces ended [1-9]\d*, and its oldest queued job has waited \d+\.\d s/);
    await redis.hdel(candidateMeta, 'paused');
  });
});
