import { rmSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { interactiveKeys, type ModelDescription } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { mlpFeatures } from './helpers/batches.js';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, TEST_KEY, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * The MAX_QUEUE_DEPTH and TENANT_MAX_QUEUED counts (docs/api.md, POST /v1/jobs).
 *
 * "`503 queue_full` when the job would take the queues past `MAX_QUEUE_DEPTH` instances ... The limits are
 * over every queue any gateway has written to, and they hold exactly across any number of gateways".
 */

const post = (base: string, version: string, x: number, key = TEST_KEY) =>
  fetch(`${base}/v1/jobs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'mlp', version, input: { features: mlpFeatures(x) } }),
  });

for (const limit of [
  { env: 'MAX_QUEUE_DEPTH', status: 503, code: 'queue_full' },
  { env: 'TENANT_MAX_QUEUED', status: 429, code: 'quota_exceeded' },
] as const) {
  describe(`queue limits: ${limit.env} counts the queue of a version this gateway does not route to`, function () {
    this.timeout(60_000);
    const LIMIT = 3;
    let repo: TempModelRepo;
    let p: TestPlatform;
    let second: Gateway | undefined;
    let redis: Redis;

    before(async () => {
      repo = servedMlpRepo(['1', '2']);
      redis = new Redis(TEST_REDIS_URL);
      p = await startPlatform({ models: repo.root, worker: false, env: { [limit.env]: String(LIMIT), MODEL_POLL_SECONDS: '0' } });
    });
    after(async () => {
      await second?.close();
      await p?.close();
      redis?.disconnect();
      repo?.remove();
    });

    it(`a gateway started after version 1 left the repository (its queued jobs still to drain) refuses past ${limit.env} (${limit.status} ${limit.code}), as the first gateway does`, async () => {
      // Version 1's queue fills to the limit (no worker: the jobs stay queued).
      for (let i = 0; i < LIMIT; i++) expect((await post(p.baseUrl, '1', i)).status, 'fill v1').to.equal(202);
      const v1 = interactiveKeys(p.prefix, 'mlp', '1');
      expect(Number(await redis.get(v1.queued))).to.equal(LIMIT);
      // The first gateway holds the limit across queues: version 2 is refused.
      const onFirst = await post(p.baseUrl, '2', 100);
      expect(onFirst.status, 'the first gateway refuses v2: the limit is reached').to.equal(limit.status);
      await onFirst.body?.cancel();

      // Version 1 is removed from the repository ("a removed one is drained": its accepted jobs still run),
      // and a second gateway starts (a deploy, a scale-out) on the same Redis and repository.
      rmSync(path.join(repo.root, 'mlp', '1'), { recursive: true, force: true });
      second = await createGateway(p.config, silentLogger);
      const secondUrl = `http://127.0.0.1:${await second.listen(0, '127.0.0.1')}`;

      const res = await post(secondUrl, '2', 101);
      const text = await res.text();
      const v2 = interactiveKeys(p.prefix, 'mlp', '2');
      const total = Number(await redis.get(v1.queued)) + Number((await redis.get(v2.queued)) ?? 0);
      expect(
        res.status,
        `second gateway: ${res.status} ${text}; queued instances now ${total} for ${limit.env}=${LIMIT} (v1's queue is never read by this gateway)`,
      ).to.equal(limit.status);
    });
  });
}

describe('queue limits: envelopes removed from their queue by hand', function () {
  this.timeout(60_000);
  const DEPTH = 2;
  let p: TestPlatform;
  let redis: Redis;
  let queue: Queue | undefined;
  let queueConnection: Redis | undefined;

  before(async () => {
    redis = new Redis(TEST_REDIS_URL);
    p = await startPlatform({ worker: false, env: { MAX_QUEUE_DEPTH: String(DEPTH) } });
  });
  after(async () => {
    await queue?.close();
    queueConnection?.disconnect();
    await p?.close();
    redis?.disconnect();
  });

  it('after an operator removes queued envelopes (docs/api.md: "its id is 404 job_not_found") and the workers run, the queue takes jobs again', async () => {
    const ids: string[] = [];
    for (let i = 0; i < DEPTH; i++) {
      const res = await post(p.baseUrl, '2', i);
      expect(res.status).to.equal(202);
      ids.push(((await res.json()) as { id: string }).id);
    }
    const k = interactiveKeys(p.prefix, 'mlp', '2');
    // The operator deletes the queued entries through BullMQ (the queues keep BullMQ's layout, scripts.ts).
    queueConnection = redis.duplicate();
    queue = new Queue(k.ref.name, { connection: queueConnection, prefix: k.ref.prefix });
    const envelopes = await redis.lrange(k.wait, 0, -1);
    expect(envelopes.length).to.be.greaterThan(0);
    for (const e of envelopes) await queue.remove(e);
    expect(await redis.llen(k.wait), 'nothing left waiting').to.equal(0);
    for (const id of ids) expect((await p.api(`/v1/jobs/${id}`)).status, 'the removed job reads 404').to.equal(404);

    // Workers come, and their sweep runs (it drops the index entries of envelopes that are gone): the queue
    // is empty, so the gateway should take jobs again.
    const worker = await p.startWorker();
    const swept = await worker.sweep();
    expect(swept.droppedJobs, 'the sweep saw the removed jobs').to.equal(DEPTH);
    expect(swept.uncountedInstances, 'the sweep let go of the counts the removed envelopes held').to.equal(DEPTH);
    const res = await waitUntil(
      async () => {
        const r = await post(p.baseUrl, '2', 50);
        if (r.status === 202 || r.status === 200) return r;
        await r.body?.cancel();
        return null;
      },
      5000,
      `a submit to be accepted on an empty queue (queued counter stays ${await redis.get(k.queued)}, wait list ${await redis.llen(k.wait)})`,
    ).catch((err: Error) => err);
    expect(res instanceof Error ? res.message : 'accepted', 'the empty queue keeps refusing: queued counter never came down').to.equal('accepted');
  });
});

const ADMIN = 'queue-counts-admin';

describe('queue limits: the counts of a queue no worker serves', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let redis: Redis;
  let worker: InferenceWorker | undefined;
  let queue: Queue | undefined;
  let queueConnection: Redis | undefined;

  before(async () => {
    repo = servedMlpRepo(['1', '2']);
    redis = new Redis(TEST_REDIS_URL);
    p = await startPlatform({ models: repo.root, worker: false, env: { MAX_QUEUE_DEPTH: '2', ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0.2' } });
  });
  after(async () => {
    await queue?.close();
    queueConnection?.disconnect();
    await worker?.close();
    await p?.close();
    redis?.disconnect();
    repo?.remove();
  });

  const post = (version: string, x: number) =>
    p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version, input: { features: mlpFeatures(x) } }) });

  it('are set back to 0 by the sweep too: version 1 unloaded, its queued envelopes removed by hand, version 2 takes jobs again', async () => {
    // Two jobs queued for version 1 (no worker yet): the limit is reached.
    for (let i = 0; i < 2; i++) expect((await post('1', i)).status).to.equal(202);
    const v1 = interactiveKeys(p.prefix, 'mlp', '1');
    // An admin unloads version 1, and an operator clears its queue (the jobs are not wanted).
    const unload = await fetch(`${p.baseUrl}/v1/models/mlp/versions/1/unload`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    expect(unload.status, await unload.clone().text()).to.equal(202);
    queueConnection = redis.duplicate();
    queue = new Queue(v1.ref.name, { connection: queueConnection, prefix: v1.ref.prefix });
    for (const e of await redis.lrange(v1.wait, 0, -1)) await queue.remove(e);
    expect(await redis.llen(v1.wait), 'nothing waits for version 1').to.equal(0);

    // A worker starts: it lets version 1 go (draining, nothing queued) and serves version 2.
    worker = await createWorker(p.config, silentLogger);
    await p.gateway.catalog.refresh();
    await waitUntil(
      async () => {
        const res = await p.api('/v1/models/mlp');
        if (res.status !== 200) return false;
        const d = ((await res.json()) as ModelDescription).versions_detail;
        return d.some((x) => x.version === '2' && x.state === 'ready') && !d.some((x) => x.version === '1');
      },
      20_000,
      'version 2 ready and version 1 let go',
    );

    // The fleet's sweep runs (its timer's every 30 s; run now).
    const swept = await worker.sweep();
    let last = '';
    const res = await waitUntil(
      async () => {
        const r = await post('2', 50);
        if (r.status === 202) return 'accepted';
        last = `${r.status} ${((await r.json()) as { code?: string }).code}`;
        return null;
      },
      3000,
      'a job for version 2',
    ).catch(
      async () =>
        `refused ${last}; sweep uncountedInstances=${swept.uncountedInstances}; version 1: wait ${await redis.llen(v1.wait)}, queued counter ${await redis.get(v1.queued)} `,
    );
    expect(res, 'both queues are empty: the limit should not refuse').to.equal('accepted');
  });
});
