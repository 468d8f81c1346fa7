import { expect } from 'chai';
import { Redis } from 'ioredis';
import { loadConfig } from '@infer/config';
import { silentLogger } from '@infer/logger';
import { JobStore } from '@infer/job-store';
import type { ModelDescription } from '@infer/contract';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { mlpFeatures } from './helpers/batches.js';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { deletePrefix, TEST_KEY, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/api.md, Cancel-After: "Such jobs end within a second, read or not:
 * the workers serving the version sweep its queue, and while no worker
 * serves it (the fleet restarting or scaled to zero, ...) the gateways do."
 * A version unloaded (or whose folder was removed) while no worker holds it
 * is released by every gateway at once (ModelCatalog's draining hook,
 * releaseDrained), while its queue still holds jobs with deadlines. No
 * worker will serve it either (it is draining): the gateways' sweep must
 * still cover its queue, or those jobs would stay `queued` past their
 * deadline, holding the tenant's quota and MAX_QUEUE_DEPTH, until some
 * client happened to read them.
 *
 * So must a model whose last version was let go of: the repository forgets
 * the model then, and the unload that did it is still answered 202.
 *
 * A production gateway loads its own repository (releaseDrained on), so this
 * starts one with createGateway(config) rather than startPlatform, whose
 * gateway shares the worker's repository and never releases a version.
 */
const ADMIN = 'deadlines-released-admin';

describe('deadlines: gateway deadline sweep and a draining version no worker holds', function () {
  this.timeout(60_000);
  let repo: TempModelRepo | undefined;
  let gateway: Gateway | undefined;
  let redis: Redis | undefined;
  let prefix: string | undefined;

  afterEach(async () => {
    redis?.disconnect();
    redis = undefined;
    await gateway?.close();
    gateway = undefined;
    if (prefix) await deletePrefix(TEST_REDIS_URL, prefix);
    prefix = undefined;
    repo?.remove();
    repo = undefined;
  });

  /** A gateway of its own repository, no worker: a job with a 4 s deadline pinned to version 1, then version 1 unloaded. */
  async function unloadedWithQueuedJob(versions: string[]): Promise<{ id: string; submitted: number; unload: Response }> {
    repo = servedMlpRepo(versions);
    prefix = uniquePrefix('released-sweep');
    const config = loadConfig({
      REDIS_URL: TEST_REDIS_URL,
      MODEL_REPOSITORY: repo.root,
      QUEUE_PREFIX: prefix,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      ADMIN_API_KEYS: `ops:${ADMIN}`,
      MODEL_POLL_SECONDS: '0.2',
      PORT: '0',
      HOST: '127.0.0.1',
      WORKER_METRICS_PORT: '0',
    });
    gateway = await createGateway(config, silentLogger);
    const base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;

    // No worker at all (scaled to zero): the job waits in version 1's queue.
    const res = await fetch(`${base}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', 'cancel-after': '4s' },
      body: JSON.stringify({ model: 'mlp', version: '1', input: { features: mlpFeatures(1) } }),
    });
    expect(res.status, await res.clone().text()).to.equal(202);
    const { id } = (await res.json()) as { id: string };
    const submitted = Date.now();

    // The operator unloads version 1 meanwhile (the fleet is down; it will come back without it).
    const unload = await fetch(`${base}/v1/models/mlp/versions/1/unload`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    // Precondition: the gateway lets go of the version (no live worker holds it), well before the deadline.
    await waitUntil(() => !gateway!.catalog.all().some((v) => v.name === 'mlp' && v.version === '1'), 3_000, 'the gateway to release mlp v1');
    expect(Date.now() - submitted, 'released before the deadline').to.be.below(4_000);
    return { id, submitted, unload };
  }

  /** Read the record from Redis directly: a read through the gateway would end the job itself. */
  async function expectEndedUnread(id: string, submitted: number): Promise<void> {
    redis = new Redis(TEST_REDIS_URL);
    const store = new JobStore(redis, { prefix: prefix!, resultTtlMs: 60_000 });
    const ended = await waitUntil(async () => ((await store.read(id)).kind === 'ended' ? true : null), 4_000 + 6_000 - (Date.now() - submitted), 'the job to end').catch(
      () => false,
    );
    const kind = (await store.read(id)).kind;
    expect(ended, `job ${id} is still ${kind} ${Math.round((Date.now() - submitted) / 1000)} s after a 4 s Cancel-After, unread (no one sweeps a released version's queue)`).to.equal(true);
  }

  it('ends a queued job of an unloaded version at its Cancel-After deadline, unread', async () => {
    const { id, submitted, unload } = await unloadedWithQueuedJob(['1', '2']);
    expect(unload.status, await unload.clone().text()).to.equal(202);
    await expectEndedUnread(id, submitted);
  });

  it('and of a model whose only version was unloaded; the unload is answered 202, the version draining', async () => {
    const { id, submitted, unload } = await unloadedWithQueuedJob(['1']);
    expect(unload.status, await unload.clone().text()).to.equal(202);
    const described = (await unload.json()) as ModelDescription;
    expect(described.versions_detail.find((d) => d.version === '1')?.state).to.equal('draining');
    expect(described.versions).to.not.include('1');
    await expectEndedUnread(id, submitted);
  });
});
