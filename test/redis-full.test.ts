import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, type Job } from '@infer/contract';
import { expectProblem, expectRetryAfter, pollJob } from './helpers/jobs.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { withJobScripts } from '../packages/job-store/src/redis-scripts.js';

/**
 * Redis full: a Redis of the test's own with `noeviction` (the only safe
 * policy for a queue) and a small maxmemory. Submits must answer 503
 * `unavailable` with Retry-After, leave nothing half-written, and the
 * platform must come back by itself once workers have drained the queue.
 */
describe('Redis full (maxmemory, noeviction)', function () {
  this.timeout(60_000);
  let redis: OwnRedis;
  let admin: Redis;
  let p: TestPlatform;
  before(async () => {
    redis = await OwnRedis.start(['--maxmemory-policy', 'noeviction']);
    admin = new Redis(redis.url);
    p = await startPlatform({ redisUrl: redis.url, worker: false });
  });
  after(async () => {
    await p?.close().catch(() => undefined);
    admin?.disconnect();
    await redis?.stop();
  });

  /** An ocr-cls image job: 110 KB of input a job fills a small Redis quickly. */
  const image = (seed: number) =>
    JSON.stringify({
      model: 'ocr-cls',
      input: { x: { datatype: 'FP32', shape: [3, 48, 192], b64: Buffer.from(new Float32Array(3 * 48 * 192).fill(seed / 1000).buffer).toString('base64') } },
    });

  it('answers 503 unavailable with Retry-After, writes nothing half, and recovers once the queue drains', async () => {
    const used = Number(/used_memory:(\d+)/.exec(await admin.info('memory'))![1]);
    await admin.config('SET', 'maxmemory', String(used + 3 * 1024 * 1024));
    const k = interactiveKeys(p.prefix, 'ocr-cls', '1');
    const accepted: string[] = [];
    let refused: Response | undefined;
    for (let i = 0; i < 200 && !refused; i++) {
      const res = await p.api('/v1/jobs', { method: 'POST', body: image(i) });
      if (res.status === 202) accepted.push(((await res.json()) as Job).id);
      else refused = res;
    }
    expect(refused, 'a submit refused before 200 images').to.not.equal(undefined);
    expectRetryAfter(refused!);
    await expectProblem(refused!, 503, 'unavailable');
    expect(accepted.length).to.be.at.least(5);

    // Nothing half-written: every accepted job, and only those, is queued, and the count agrees. (A refused
    // image's inputs key is written and deleted again, so Redis may find room for one more of these.)
    const again = await Promise.all(Array.from({ length: 5 }, (_, i) => p.api('/v1/jobs', { method: 'POST', body: image(1000 + i) })));
    for (const res of again) {
      if (res.status === 202) accepted.push(((await res.json()) as Job).id);
      else await expectProblem(res, 503, 'unavailable');
    }
    expect((await admin.hkeys(k.index)).sort()).to.deep.equal([...accepted].sort());
    expect(Number(await admin.get(k.queued))).to.equal(accepted.length);
    const envelopes = await admin.lrange(k.wait, 0, -1);
    let jobsInEnvelopes = 0;
    for (const id of envelopes) jobsInEnvelopes += Number(await admin.hget(k.base + id, 'n'));
    expect(jobsInEnvelopes).to.equal(accepted.length);
    // Each queued envelope's inputs key (images are too large for the scripts), and none of a refused one's.
    expect((await admin.keys(`${k.base}*:in`)).sort()).to.deep.equal(envelopes.map((id) => k.inputs(id)).sort());
    // Reads still work while Redis is full.
    const queued = await p.api(`/v1/jobs/${accepted[0]}`);
    expect(queued.status).to.equal(200);

    // A worker drains the queue even though Redis is full (taking and ending envelopes frees memory) ...
    await p.startWorker();
    for (const id of accepted) expect((await pollJob(p, id, 30_000)).status).to.equal('succeeded');
    // ... and submits are taken again.
    const after = await p.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=20' }, body: image(7) });
    expect(after.status, await after.clone().text()).to.equal(200);
    expect(((await after.json()) as Job).status).to.equal('succeeded');
  });
});

/**
 * An envelope's inputs key is written just before its ENQUEUE script (see
 * EnvelopeQueue.enqueue). When Redis fills up between the two, the script's
 * first write is refused: the script must delete the inputs key then, or it
 * would be left behind until its expiry. Driven at the script itself, since
 * only there can Redis be made full between the two.
 */
describe('Redis full between an envelope\'s inputs and its script', function () {
  this.timeout(30_000);
  let redis: OwnRedis;
  let admin: Redis;
  before(async () => {
    redis = await OwnRedis.start(['--maxmemory-policy', 'noeviction']);
    admin = new Redis(redis.url);
  });
  after(async () => {
    admin?.disconnect();
    await redis?.stop();
  });

  it('ENQUEUE refused for memory deletes the inputs key and writes nothing', async () => {
    const k = interactiveKeys('t-full', 'ocr-cls', '1');
    const scripts = withJobScripts(admin);
    await admin.set(k.inputs('e1'), Buffer.alloc(110_000, 1), 'PX', 60_000);
    await admin.config('SET', 'maxmemory', '1');
    const enqueue = scripts.inferEnqueue(
      k.wait, k.marker, k.queued, k.index, k.base + 'e1', k.tenants, k.deadlines, k.meta, k.inputs('e1'), k.allowances,
      'e1', `${k.ref.name}:e1`, 1, '', Date.now(), JSON.stringify({ jobs: [] }), '', '1', '', 0, 0, 'job-1',
    );
    const err = await enqueue.then(() => null, (e: unknown) => e as Error);
    await admin.config('SET', 'maxmemory', '0');
    expect(err?.message).to.match(/^OOM/);
    expect(await admin.exists(k.inputs('e1'), k.base + 'e1', k.queued, k.wait)).to.equal(0);
  });
});
