import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { Batch, Job } from '@infer/contract';
import { mlpFeatures, readResults, submitBatch, toNdjson, waitForBatchEnd } from './helpers/batches.js';
import { getJob, postJob, runJob } from './helpers/jobs.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * Redis Cluster refuses a command, a MULTI or a script whose keys hash to
 * different slots (CROSSSLOT), even on a single node that owns every slot.
 * So a cluster-enabled redis-server of the test's own, holding all 16384
 * slots, is a Redis on which the whole platform must work unchanged: every
 * script, transaction and multi-key command keeps its keys under one hash
 * tag. The test drives each part that writes to Redis (jobs waited for,
 * polled, long-polled, canceled, idempotent; webhooks and their delivery
 * log; bulk batches, their results and listing; routing, rollouts, load
 * requests and the model events log; the rate limiter) and then asks Redis how many
 * commands it refused: none.
 */
describe('Redis Cluster: every command keeps its keys in one slot', function () {
  this.timeout(90_000);
  let redis: OwnRedis;
  let dir: string;
  let p: TestPlatform;
  let receiver: WebhookReceiver<{ type: string; data: Job }>;
  const ADMIN = 'cluster-admin-key';

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'infer-cluster-'));
    redis = await OwnRedis.start(['--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, 'nodes.conf'), '--dir', dir]);
    const admin = new Redis(redis.url);
    try {
      await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
      await waitUntil(async () => String(await admin.call('CLUSTER', 'INFO')).includes('cluster_state:ok'), 10_000, 'the one-node cluster to be ok');
      // The proof that this Redis refuses what a cluster refuses (else the test below could not fail).
      const refused = await admin.mget('a', 'b').then(
        () => '',
        (err: Error) => err.message,
      );
      expect(refused).to.match(/CROSSSLOT/);
      await admin.config('RESETSTAT');
    } finally {
      admin.disconnect();
    }
    receiver = await startWebhookReceiver();
    p = await startPlatform({
      redisUrl: redis.url,
      env: { WEBHOOK_ALLOW_PRIVATE: 'true', ADMIN_API_KEYS: `ops:${ADMIN}`, RATE_LIMIT_PER_SECOND: '1000' },
    });
  });

  after(async () => {
    await p?.close();
    await receiver?.close();
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('runs jobs, webhooks, batches and model changes with no command refused', async () => {
    const body = (i: number) => ({ model: 'mlp', input: { features: mlpFeatures(i) } });

    // Jobs: waited for, polled, long-polled, idempotent, canceled.
    const waited = await runJob(p, body(1));
    expect(waited.status).to.equal('succeeded');
    // An image large enough that its envelope keeps its inputs in a key of their own (SET, then MGET by the worker).
    const image = Buffer.from(Float32Array.from({ length: 3 * 48 * 192 }, (_, i) => (i % 255) / 255).buffer).toString('base64');
    const large = await runJob(p, { model: 'ocr-cls', input: { x: { datatype: 'FP32', shape: [3, 48, 192], b64: image } } });
    expect(large.status, large.error?.message).to.equal('succeeded');
    const queued = await postJob(p, { ...body(2), webhook: `${receiver.url}/hook`, webhook_events_filter: ['start', 'completed'] });
    const longPoll = await p.api(`/v1/jobs/${queued.job.id}`, { headers: { prefer: 'wait=10' } });
    expect(((await longPoll.json()) as Job).status).to.equal('succeeded');
    const idem = { method: 'POST', body: JSON.stringify(body(3)), headers: { 'idempotency-key': 'cluster-1', prefer: 'wait=10' } };
    const first = (await (await p.api('/v1/jobs', idem)).json()) as Job;
    const replay = await p.api('/v1/jobs', idem);
    expect(replay.headers.get('idempotent-replayed')).to.equal('true');
    expect(((await replay.json()) as Job).id).to.equal(first.id);
    const late = await postJob(p, body(4));
    const cancel = await p.api(`/v1/jobs/${late.job.id}/cancel`, { method: 'POST' });
    expect([200, 409]).to.include(cancel.status); // canceled while queued or running, or already ended
    expect(['succeeded', 'canceled']).to.include((await getJob(p, late.job.id)).status);

    // Webhooks: both events delivered, and the delivery log lists them with their attempts.
    await waitUntil(() => receiver.deliveries.filter((d) => d.event.data.id === queued.job.id).length === 2, 10_000, 'job.started and job.completed');
    await waitUntil(async () => {
      const log = (await (await p.api(`/v1/jobs/${queued.job.id}/webhook_deliveries`)).json()) as { data: Array<{ state: string; attempts: unknown[] }> };
      return log.data.length === 2 && log.data.every((d) => d.state === 'succeeded' && d.attempts.length === 1);
    }, 10_000, 'both deliveries logged as succeeded');

    // A bulk batch: run, results read, listed.
    const batch: Batch = await submitBatch(p, { ndjson: toNdjson(Array.from({ length: 40 }, (_, i) => ({ custom_id: `r${i}`, input: { features: mlpFeatures(i) } }))) });
    expect((await waitForBatchEnd(p, batch.id)).status).to.equal('completed');
    expect(await readResults(p, batch.id)).to.have.length(40);
    const listed = (await (await p.api('/v1/batches?limit=5')).json()) as { data: Batch[] };
    expect(listed.data.map((b) => b.id)).to.include(batch.id);

    // Model changes: routing set and reset, a rollout started and canceled, a load request, the events log read.
    const admin = { key: ADMIN };
    const routed = await p.api('/v1/models/mlp/routing', { ...admin, method: 'PUT', body: JSON.stringify({ weights: { '1': 50, '2': 50 } }) });
    expect(routed.status, await routed.clone().text()).to.equal(200);
    expect((await p.api('/v1/models/mlp/routing', { ...admin, method: 'PUT', body: JSON.stringify({ weights: null }) })).status).to.equal(200);
    const started = await p.api('/v1/models/mlp/rollouts', { ...admin, method: 'POST', body: JSON.stringify({ version: '1', steps: [10, 100], step_seconds: 60 }) });
    expect(started.status, await started.clone().text()).to.equal(201);
    const rollout = (await started.json()) as { id: string };
    await runJob(p, body(5)); // a job under the rollout's routing: its figures are written for the step
    expect((await p.api(`/v1/models/mlp/rollouts/${rollout.id}/cancel`, { ...admin, method: 'POST' })).status).to.equal(200);
    expect((await p.api('/v1/models/mlp/versions/2/load', { ...admin, method: 'POST' })).status).to.equal(202); // every process looks at its folder
    const events = (await (await p.api('/v1/models/mlp/events', admin)).json()) as { data: Array<{ type: string }> };
    expect(events.data.map((e) => e.type)).to.include.members(['routing_changed', 'rollout_started']);

    // Nothing was refused, by any process (INFO commandstats counts refusals, CROSSSLOT among them).
    const check = new Redis(redis.url);
    try {
      const stats = String(await check.info('commandstats'));
      const refused = stats.split('\n').filter((line) => /rejected_calls=[1-9]/.test(line));
      expect(refused, 'commands Redis Cluster refused').to.deep.equal([]);
      expect(String(await check.info('errorstats'))).not.to.match(/CROSSSLOT/);
    } finally {
      check.disconnect();
    }
  });
});
