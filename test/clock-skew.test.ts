import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { Job } from '@infer/contract';
import { ModelControl, p50, type VersionFigures } from '@infer/model-control';
import { mlpFeatures } from './helpers/batches.js';
import { parse, value } from './helpers/prometheus.js';
import { OTHER_TENANT_KEY, startPlatform, TEST_KEY, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { freePort } from './helpers/redis-server.js';
import { clockShifted, Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';
import { startWorkerProcess } from './helpers/worker-process.js';

/**
 * Gateways and workers on hosts whose wall clocks differ: NTP keeps them
 * tens of milliseconds apart, a host whose sync broke drifts seconds, a VM
 * resumed from a pause jumps. A job's stamps and deadlines cross processes
 * (a gateway sets a Cancel-After deadline, a worker and every gateway judge
 * it; a worker stamps started_at against the gateway's created_at), and so
 * do the rate-limit windows, the fleet's heartbeats and a rollout's
 * latencies. Each process reads them on Redis's clock (platformNow: its own
 * clock plus an offset measured with TIME), so skew between hosts changes
 * none of them.
 *
 * The gateway runs in this process on the host's clock; the skewed app is a
 * process of its own whose Date.now() and `new Date()` run ahead or behind
 * (test/helpers/clock-shift.ts). Same Redis, same model repository.
 */
const SKEW_MS = 2000;

/** A worker process on `p` whose clock runs `ms` ahead (negative: behind), once the gateway counts it ready. */
function shiftedWorker(p: TestPlatform, ms: number, env: Record<string, string> = {}): Promise<Spawned> {
  const shifted = clockShifted(ms);
  return startWorkerProcess(p, 'mlp', { env: { ...shifted.env, ...env }, nodeArgs: shifted.nodeArgs });
}

async function stop(s: Spawned | undefined): Promise<void> {
  if (!s || !s.groupAlive()) return;
  s.signalGroup('SIGTERM');
  await s.exit(20_000).catch(() => s.kill());
}

for (const shift of [SKEW_MS, -SKEW_MS]) {
  describe(`clocks: a worker whose clock runs ${Math.abs(shift)} ms ${shift > 0 ? 'ahead of' : 'behind'} the gateway's`, function () {
    this.timeout(90_000);
    let p: TestPlatform | undefined;
    let worker: Spawned | undefined;

    before(async () => {
      p = await startPlatform({ worker: false });
      worker = await shiftedWorker(p, shift);
      // Warm the model up (its first run), then leave the worker idle on its blocking take.
      const warm = await submit({});
      expect(warm.status, JSON.stringify(warm.error)).to.equal('succeeded');
    });
    after(async () => {
      await stop(worker);
      await p?.close();
    });

    async function submit(headers: Record<string, string>): Promise<Job> {
      const res = await p!.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=20', ...headers }, body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(1) } }) });
      expect(res.status, await res.clone().text()).to.equal(200);
      return (await res.json()) as Job;
    }

    /** A job an idle worker takes at once: submitted once the worker's last take has gone back to blocking. */
    async function submitToIdleWorker(headers: Record<string, string> = {}): Promise<{ job: Job; elapsedMs: number }> {
      const settle = performance.now() + 300;
      await waitUntil(() => performance.now() > settle, 5_000, 'the worker to block on its take again');
      const t0 = performance.now();
      const job = await submit(headers);
      return { job, elapsedMs: performance.now() - t0 };
    }

    it('created_at <= started_at <= completed_at, and none of their gaps (nor queue_ms) is the skew', async () => {
      const { job, elapsedMs } = await submitToIdleWorker();
      expect(job.status).to.equal('succeeded');
      const created = Date.parse(job.created_at);
      const started = Date.parse(job.started_at!);
      const completed = Date.parse(job.completed_at!);
      expect(started, `started_at ${job.started_at} before created_at ${job.created_at}`).to.be.at.least(created);
      expect(completed, `completed_at ${job.completed_at} before started_at ${job.started_at}`).to.be.at.least(started);
      expect(elapsedMs, 'the whole request took').to.be.below(1000);
      expect(job.metrics?.queue_ms, `queue_ms of a job answered in ${Math.round(elapsedMs)} ms end to end`).to.be.below(1000);
      expect(completed - created, `completed_at − created_at of a job answered in ${Math.round(elapsedMs)} ms`).to.be.below(1000);
    });

    it('a job an idle worker takes at once, well within its Cancel-After deadline (1 s), runs', async () => {
      const { job, elapsedMs } = await submitToIdleWorker({ 'cancel-after': '1s' });
      expect(job.status, `answered in ${Math.round(elapsedMs)} ms, yet ended ${job.status} ${JSON.stringify(job.error)}`).to.equal('succeeded');
    });
  });
}

describe(`clocks: a second gateway whose clock runs ${SKEW_MS} ms ahead`, function () {
  this.timeout(60_000);
  let p: TestPlatform | undefined;
  let b: Spawned | undefined;
  let bUrl = '';

  before(async () => {
    p = await startPlatform({ worker: false, env: { RATE_LIMIT_PER_SECOND: '1000' } });
    const port = await freePort();
    const shifted = clockShifted(SKEW_MS);
    b = new Spawned(
      'start:gateway',
      {
        ...shifted.env,
        REDIS_URL: p.config.redisUrl,
        QUEUE_PREFIX: p.prefix,
        MODEL_REPOSITORY: p.config.modelRepository,
        API_KEYS: `tenant-a:${TEST_KEY},tenant-b:${OTHER_TENANT_KEY}`,
        RATE_LIMIT_PER_SECOND: '1000',
        PORT: String(port),
        HOST: '127.0.0.1',
      },
      { nodeArgs: shifted.nodeArgs },
    );
    await b.waitForLog('gateway listening', 60_000);
    bUrl = `http://127.0.0.1:${port}`;
  });
  after(async () => {
    await stop(b);
    await p?.close();
  });

  it('does not end a job queued with Cancel-After 4 s (no worker serves it) before its deadline', async () => {
    const t0 = performance.now();
    const res = await p!.api('/v1/jobs', { method: 'POST', headers: { 'cancel-after': '4000ms' }, body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(2) } }) });
    expect(res.status).to.equal(202);
    const { id } = (await res.json()) as Job;
    // Read through gateway B, as a load balancer sends some polls: a read past the deadline ends the job.
    const ended = await waitUntil(
      async () => {
        const j = (await (await fetch(`${bUrl}/v1/jobs/${id}`, { headers: { authorization: `Bearer ${TEST_KEY}` } })).json()) as Job;
        return j.status !== 'queued' ? { j, at: performance.now() - t0 } : undefined;
      },
      15_000,
      'the job to end',
    );
    expect(ended.j.error?.code).to.equal('deadline_exceeded');
    expect(ended.at, `ended ${Math.round(ended.at)} ms after its submit, its deadline 4000 ms`).to.be.at.least(3900);
  });

  it('reports a job queued a moment ago as a moment old in infer_queue_oldest_age_seconds, not as its skew', async () => {
    const res = await fetch(`${bUrl}/v1/jobs`, { method: 'POST', headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(5) } }) });
    expect(res.status, await res.clone().text()).to.equal(202);
    const samples = parse(await (await fetch(`${bUrl}/metrics`)).text());
    expect(value(samples, 'infer_queue_depth', { model: 'mlp' })).to.be.at.least(1);
    expect(value(samples, 'infer_queue_oldest_age_seconds', { model: 'mlp', queue: 'interactive' }), 'age of the oldest job, queued just now').to.be.below(1);
  });

  it('shares the rate-limit window with this gateway: requests through both count in the same epoch second(s)', async () => {
    const redis = new Redis(TEST_REDIS_URL);
    try {
      // One tenant's key through this gateway, the other's through B: two buckets, each a gateway's, whose
      // window keys are what appear from now on.
      const earlier = new Set(await redis.keys(`${p!.prefix}:ratelimit:*`));
      const models = (url: string, key: string) => fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${key}` } }).then((r) => r.arrayBuffer());
      // A gateway pushes its counts within 50 ms, to the window they were counted in; counts a window that
      // rolled over before its push never pushed (by design: the limiter has moved on). So a burst at the end
      // of a second may leave no key: send bursts through both until each gateway's bucket has a window.
      const windows = await waitUntil(
        async () => {
          await Promise.all(Array.from({ length: 5 }, () => [models(p!.baseUrl, TEST_KEY), models(bUrl, OTHER_TENANT_KEY)]).flat());
          const keys = (await redis.keys(`${p!.prefix}:ratelimit:*`)).filter((k) => !earlier.has(k));
          const buckets = new Set(keys.map((k) => k.split(':').at(-2)));
          return buckets.size >= 2 ? keys.map((k) => Number(k.split(':').at(-1))) : undefined;
        },
        10_000,
        'both gateways to push their counts',
      );
      // On each host's clock, B's windows would be two seconds after this gateway's.
      expect(Math.max(...windows) - Math.min(...windows), `windows ${JSON.stringify(windows)}`).to.be.at.most(1);
    } finally {
      redis.disconnect();
    }
  });
});

describe('clocks: a worker whose clock runs 7 s behind the gateways\'', function () {
  this.timeout(90_000);
  let p: TestPlatform | undefined;
  let w: Spawned | undefined;

  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await stop(w);
    await p?.close();
  });

  it('is counted in the fleet (its heartbeats are not read as 7 s old): workers_ready, and its jobs run', async () => {
    // startWorkerProcess waits for the gateway to count it ready.
    w = await shiftedWorker(p!, -7000);
    const res = await p!.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=20' }, body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(3) } }) });
    expect(((await res.json()) as Job).status).to.equal('succeeded');
  });
});

describe('clocks: a rollout\'s latencies, recorded by a worker whose clock runs 500 ms ahead', function () {
  this.timeout(90_000);
  const ADMIN = 'clock-skew-admin';
  let p: TestPlatform | undefined;
  let w: Spawned | undefined;
  let redis: Redis | undefined;

  before(async () => {
    p = await startPlatform({ worker: false, env: { ADMIN_API_KEYS: `ops:${ADMIN}` } });
    redis = new Redis(TEST_REDIS_URL);
    w = await shiftedWorker(p, 500, { ADMIN_API_KEYS: `ops:${ADMIN}` });
  });
  after(async () => {
    redis?.disconnect();
    await stop(w);
    await p?.close();
  });

  const admin = (pathname: string, init: RequestInit = {}) => fetch(p!.baseUrl + pathname, { ...init, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' } });

  it('are each job\'s submit-to-end time, not the skew (a rollback judged on p50 would roll back a healthy version)', async () => {
    expect((await admin('/v1/models/mlp/routing', { method: 'PUT', body: JSON.stringify({ weights: { '1': 100 } }) })).status).to.equal(200);
    const res = await admin('/v1/models/mlp/rollouts', { method: 'POST', body: JSON.stringify({ version: '2', steps: [50, 100], step_seconds: 3600 }) });
    expect(res.status, await res.clone().text()).to.equal(201);
    const rollout = (await res.json()) as { id: string };
    const control = new ModelControl(redis!, p!.prefix);
    const figures = async (v: string): Promise<VersionFigures> => control.figures('mlp', { id: rollout.id, step: 0 }, v);
    let slowest = 0;
    await waitUntil(
      async () => {
        const t0 = performance.now();
        const r = await p!.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=10' }, body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(4) } }) });
        expect(((await r.json()) as Job).status).to.equal('succeeded');
        slowest = Math.max(slowest, performance.now() - t0);
        const [one, two] = await Promise.all([figures('1'), figures('2')]);
        return one.succeeded >= 5 && two.succeeded >= 5;
      },
      30_000,
      'both versions to end jobs in the step',
    );
    const [one, two] = await Promise.all([figures('1'), figures('2')]);
    const p50s = { v1: p50(one.latency), v2: p50(two.latency) };
    // Each job took `slowest` ms at most as the client saw it; the skew is 500 ms.
    expect(Math.max(p50s.v1 ?? 0, p50s.v2 ?? 0), `p50s ${JSON.stringify(p50s)} recorded for jobs that each took under ${Math.ceil(slowest)} ms`).to.be.at.most(Math.max(300, slowest + 50));
  });
});
