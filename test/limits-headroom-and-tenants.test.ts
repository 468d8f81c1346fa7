import { expect } from 'chai';
import { Redis } from 'ioredis';
import { DEPTH_ALLOWANCE_FIELD, allowanceInstances, interactiveKeys, keys, newJobId, queueTag, type EnvelopeJob } from '@infer/contract';
import { decodeInput } from '@infer/tensors';
import { mlpFeatures } from './helpers/batches.js';
import { useLimitsRig } from './helpers/limits.js';
import { seededFloats } from './helpers/ort-reference.js';
import { startPlatform, TEST_KEY, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';

/**
 * docs/api.md POST /v1/jobs: "So far from the limits submits take no lock; at them, they take turns
 * for a few Redis round trips each. Should a gateway die holding the lock, the others wait for it to
 * lapse (2 s)". A queue that gets its allowance once the pool is spent was given exactly what its
 * envelope needed (makeRoom took back `needed - free` from the others), so every later envelope to
 * it took the lock, however far the queues were from MAX_QUEUE_DEPTH. It now takes headroom too.
 */
const post = (base: string, version: string, x: number) =>
  fetch(`${base}/v1/jobs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'mlp', version, input: { features: mlpFeatures(x) } }),
  });

const image = () =>
  JSON.stringify({
    model: 'ocr-cls',
    input: { x: { datatype: 'FP32', shape: [3, 48, 192], b64: Buffer.from(new Float32Array(3 * 48 * 192).fill(0.25).buffer).toString('base64') } },
  });

describe('limits: headroom of the last queue to get an allowance (MAX_QUEUE_DEPTH=1000, three queues)', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let admin: Redis;

  before(async () => {
    p = await startPlatform({ worker: false, env: { MAX_QUEUE_DEPTH: '1000' } });
    admin = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    admin?.disconnect();
    await p?.close();
  });

  it('with under half of MAX_QUEUE_DEPTH queued, a submit to mlp 2 is not held behind a lock held by a dead gateway', async () => {
    // One job to each of the gateway's three queues: ocr-cls 1, mlp 1, then mlp 2.
    const first = await p.api('/v1/jobs', { method: 'POST', body: image() });
    expect(first.status, await first.text()).to.equal(202);
    expect((await post(p.baseUrl, '1', 0)).status).to.equal(202);
    expect((await post(p.baseUrl, '2', 1)).status).to.equal(202);
    const allowOf = async (model: string, version: string) => allowanceInstances(await admin.hget(interactiveKeys(p.prefix, model, version).meta, DEPTH_ALLOWANCE_FIELD));
    const v2 = await allowOf('mlp', '2');
    // Fill mlp 2 to its allowance (no lock needed), then one past it (the lock, once).
    const fill = await Promise.all(Array.from({ length: v2 - 1 }, (_, i) => post(p.baseUrl, '2', 10 + i)));
    expect(fill.every((r) => r.status === 202)).to.equal(true);
    await Promise.all(fill.map((r) => r.arrayBuffer()));
    expect((await post(p.baseUrl, '2', 5000)).status).to.equal(202);
    const queued = async () => {
      let sum = 0;
      for (const [m, v] of [['mlp', '1'], ['mlp', '2'], ['ocr-cls', '1']] as const) sum += Number((await admin.get(interactiveKeys(p.prefix, m, v).queued)) ?? 0);
      return sum;
    };
    const before = await queued();
    const allowances = [await allowOf('ocr-cls', '1'), await allowOf('mlp', '1'), await allowOf('mlp', '2')];
    expect(before, 'far from the limit').to.be.below(500);

    // A gateway that died holding the lock: it lapses by itself in 1.5 s.
    await admin.set(keys(p.prefix).limitsLock, 'a-dead-gateway', 'PX', 1500);
    const started = performance.now();
    const res = await post(p.baseUrl, '2', 6000);
    const waited = performance.now() - started;
    expect(res.status).to.equal(202);
    expect(waited, `waited ${waited.toFixed(0)} ms for the lock with ${before} of 1000 queued (allowances ocr-cls 1, mlp 1, mlp 2: ${allowances.join(', ')})`).to.be.below(500);
  });
});

/**
 * docs/api.md: TENANT_MAX_QUEUED refuses "only that tenant's jobs"; far from its own cap another
 * tenant's submit takes no lock. Jobs of two tenants accepted in the same turn share one envelope;
 * when one tenant was at its cap the whole envelope went to the lock path, so the other tenant's job
 * waited behind the lock (and answered 503 `unavailable` had the lock not come in 5 s). The capped
 * tenant's jobs are now set aside for the lock, and the others written at once.
 */
describe('limits: a tenant at TENANT_MAX_QUEUED and another tenant’s job in the same envelope', function () {
  this.timeout(30_000);
  const rig = useLimitsRig('rv-tenant');

  it('the other tenant’s job (1 of 5 queued) is not held behind a lock held by a dead gateway', async () => {
    const w = rig().writer({ tenantMaxQueued: 5 }, ['1']);
    expect(await rig().burst(w, '1', 5, 'ta')).to.equal(5);
    const model = rig().repo.resolve('mlp', '1');
    const add = (tenant: string, i: number) => {
      const job: EnvelopeJob = { id: newJobId(queueTag('mlp', '1')), tenant, created_at: Date.now() };
      return w.add(model, job, [decodeInput(Array.from(seededFloats(64, i)), model.inputs[0]!)]);
    };
    // tb is far from its cap: one job of it queued.
    await add('tb', 100);
    await rig().connection().set(keys(rig().prefix).limitsLock, 'a-dead-gateway', 'PX', 1500);
    const started = performance.now();
    let tbDoneAt = 0;
    // Accepted in the same turn: one envelope.
    const ta = add('ta', 200).then(
      () => 'accepted',
      (err: { code?: string }) => err.code,
    );
    const tb = add('tb', 201).then(() => (tbDoneAt = performance.now() - started));
    await tb;
    expect(await ta).to.equal('quota_exceeded');
    expect(tbDoneAt, `tenant tb (2 of 5 queued) waited ${tbDoneAt.toFixed(0)} ms behind tenant ta's cap`).to.be.below(500);
  });
});
