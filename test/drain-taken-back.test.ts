import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, type Job, type ModelDescription } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { ModelControl } from '@infer/model-control';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { mlpFeatures } from './helpers/batches.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/api.md, POST …/versions/{version}/load: "a version an admin
 * unloaded, or one still draining, is taken back (its queue reopens and it
 * is routable again once `ready`)".
 */

const ADMIN = 'taken-back-admin';
let base = '';
const admin = (pathname: string) => fetch(base + pathname, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });

describe('lifecycle: a version taken back while its workers close its queue', function () {
  this.timeout(60_000);
  let p: TestPlatform | undefined;
  let worker: InferenceWorker | undefined;
  let redis: Redis | undefined;
  const realCloseQueue = ModelControl.prototype.closeQueue;

  afterEach(async () => {
    ModelControl.prototype.closeQueue = realCloseQueue;
    redis?.disconnect();
    redis = undefined;
    await worker?.close();
    worker = undefined;
    await p?.close();
    p = undefined;
  });

  const describeModel = async () => (await (await p!.api('/v1/models/mlp')).json()) as ModelDescription;
  const stateOf = (m: ModelDescription, v: string) => m.versions_detail.find((d) => d.version === v)?.state;

  it("an admin's load that lands between a worker's read of the draining mark and its close of the queue: the version is ready again and takes jobs (its queue is not left closed for good)", async () => {
    p = await startPlatform({ worker: false, env: { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0' } });
    base = p.baseUrl;
    worker = await createWorker(p.config, silentLogger);
    await p.gateway.catalog.refresh();
    await waitUntil(async () => stateOf(await describeModel(), '1') === 'ready', 20_000, 'version 1 ready');

    // The interleaving under test: the worker has read "1 is draining" and its grace is up; before its write
    // that closes the queue reaches Redis, an admin loads version 1 again (another gateway, another tab).
    let loadAnswer: number | undefined;
    let raced: () => void;
    const racedDone = new Promise<void>((r) => (raced = r));
    ModelControl.prototype.closeQueue = async function (this: ModelControl, model: string, version: string) {
      if (model === 'mlp' && version === '1' && loadAnswer === undefined) {
        loadAnswer = 0;
        const res = await admin('/v1/models/mlp/versions/1/load');
        loadAnswer = res.status;
        await res.body?.cancel();
        await realCloseQueue.call(this, model, version);
        raced();
        return;
      }
      return realCloseQueue.call(this, model, version);
    };

    const unload = await admin('/v1/models/mlp/versions/1/unload');
    expect(unload.status, await unload.clone().text()).to.equal(202);
    await racedDone;
    ModelControl.prototype.closeQueue = realCloseQueue;
    expect(loadAnswer, 'the admin load').to.equal(202);

    // Taken back: not draining anywhere, and ready again once the worker has looked.
    await waitUntil(async () => stateOf(await describeModel(), '1') === 'ready', 20_000, 'version 1 ready again');
    await worker.lookAtModels();
    await worker.lookAtModels();
    await p.gateway.catalog.refresh();

    redis = new Redis(p.config.redisUrl);
    const closed = await redis.hexists(interactiveKeys(p.prefix, 'mlp', '1').meta, 'closed');
    const res = await p.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=20' }, body: JSON.stringify({ model: 'mlp', version: '1', input: { features: mlpFeatures(1) } }) });
    const text = await res.text();
    expect({ status: res.status, closedMark: closed }, `a pinned job for the ready version 1: ${text}`).to.deep.equal({ status: 200, closedMark: 0 });
    expect((JSON.parse(text) as Job).status).to.equal('succeeded');
  });
});
