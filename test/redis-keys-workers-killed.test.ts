import { expect } from 'chai';
import { Redis } from 'ioredis';
import { listKeys } from './helpers/redis-keys.js';
import { bulkQueue, interactiveKeys, newJobId, queueTag, type EnvelopeJob, type Job } from '@infer/contract';
import { decodeInput } from '@infer/tensors';
import { EnvelopeWriter } from '../apps/gateway/src/jobs/envelope-writer.js';
import { getBatch, submitBatch, waitForBatchEnd } from './helpers/batches.js';
import { allGone, getJob, pollJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { cubicModel } from './helpers/slow-models.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * Redis key hygiene when workers die mid-run. A worker process is
 * SIGKILLed in the middle of a micro-batch (an envelope of 4 jobs whose
 * inputs, 24 KiB, live in a key of their own, with deadlines and webhooks),
 * then another in the middle of a bulk chunk; a worker of this process takes
 * both back. Once everything has ended and expired, nothing of the dead
 * workers' work is left in Redis without a bound.
 */
const TTL_S = 2;
const LEN = 1536;
const JOBS = 4;

function unitInput(j: number, len = LEN): number[] {
  const raw = Array.from({ length: len }, (_, i) => 1 + ((i * (j + 3)) % 7) / 7);
  const norm = Math.sqrt(raw.reduce((s, v) => s + v * v, 0));
  return raw.map((v) => v / norm);
}

describe('workers SIGKILLed mid-run leave nothing unbounded behind', function () {
  this.timeout(300_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let redis: Redis;
  let hooks: WebhookReceiver;
  const spawned: Spawned[] = [];
  const workerEnv = (): Record<string, string> => ({
    REDIS_URL: p.config.redisUrl,
    QUEUE_PREFIX: p.prefix,
    MODEL_REPOSITORY: repo.root,
    WORKER_METRICS_PORT: '0',
    WORKER_LOCK_MS: '2000',
    RESULT_TTL_SECONDS: String(TTL_S),
    WEBHOOK_ALLOW_PRIVATE: 'true',
    WEBHOOK_RETRY_DELAYS_MS: '100',
    API_KEYS: 'tenant-a:test-key-a',
  });

  before(async () => {
    repo = tempModelRepo({ cubic: { onnx: cubicModel(8), config: { max_batch_size: 4, max_delay_ms: 2 } } });
    hooks = await startWebhookReceiver();
    p = await startPlatform({
      models: repo.root,
      worker: false,
      env: { WORKER_LOCK_MS: '2000', RESULT_TTL_SECONDS: String(TTL_S), WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '100' },
    });
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    for (const s of spawned) {
      if (s.child.exitCode === null && s.child.signalCode === null) s.signalGroup('SIGKILL');
      await s.exited;
    }
    redis?.disconnect();
    await p?.close();
    await hooks?.close();
    repo?.remove();
  });

  it('after the envelopes and chunks of killed workers were taken back, run, and expired, only fixed per-queue keys are left', async () => {
    // --- a worker killed mid micro-batch ---
    const a = new Spawned('start:worker', workerEnv());
    spawned.push(a);
    await a.waitForLog('worker started', 60_000);
    const model = p.gateway.models.resolve('cubic', '1');
    const writer = new EnvelopeWriter({ redis, prefix: p.prefix, resultTtlMs: TTL_S * 1000, maxQueueDepth: 1_000_000, gatewayChannel: p.gateway.waiters.channel });
    const ids: string[] = [];
    const written = Array.from({ length: JOBS }, (_, j) => {
      const job: EnvelopeJob = {
        id: newJobId(queueTag('cubic', '1')),
        tenant: 'tenant-a',
        created_at: Date.now(),
        deadline: Date.now() + 600_000,
        shapes: [[LEN]],
        webhook: hooks.url,
        webhook_events_filter: ['start', 'completed'],
      };
      ids.push(job.id);
      return writer.add(model, job, [decodeInput(unitInput(j), model.inputs[0]!)]);
    });
    await Promise.all(written);
    const k = interactiveKeys(p.prefix, 'cubic', '1');
    const envelope = Object.values(await redis.hgetall(k.index))[0]!;
    const envelopeId = envelope.slice(envelope.lastIndexOf(':') + 1);
    expect(await redis.exists(`${k.base}${envelopeId}:in`), 'the envelope keeps its inputs in a key of its own').to.equal(1);
    await waitUntil(async () => (await Promise.all(ids.map((id) => getJob(p, id)))).every((j) => j.status === 'running'), 30_000, 'A to take the envelope');
    a.signalGroup('SIGKILL');
    await a.exit(10_000);
    await p.startWorker();
    const ended: Job[] = await Promise.all(ids.map((id) => pollJob(p, id, 90_000)));
    for (const j of ended) expect(j.status, JSON.stringify(j.error)).to.equal('succeeded');

    // --- a worker killed mid bulk chunk ---
    await p.closeWorker();
    const a2 = new Spawned('start:worker', workerEnv());
    spawned.push(a2);
    await a2.waitForLog('worker started', 60_000);
    await waitUntil(async () => {
      await p.gateway.catalog.refresh();
      const m = (await (await p.api('/v1/models/cubic')).json()) as { versions_detail?: Array<{ workers_ready: number }> };
      return (m.versions_detail?.[0]?.workers_ready ?? 0) > 0;
    }, 20_000, 'the gateway to see A2');
    const batch = await submitBatch(p, { json: { model: 'cubic', items: Array.from({ length: 8 }, (_, i) => ({ custom_id: `r${i}`, input: { x: unitInput(i, 1024) } })), webhook: hooks.url } });
    await waitUntil(async () => (await getBatch(p, batch.id)).status === 'running', 30_000, 'A2 to start the chunk');
    a2.signalGroup('SIGKILL');
    await a2.exit(10_000);
    await p.startWorker();
    const endedBatch = await waitForBatchEnd(p, batch.id, 90_000);
    expect(endedBatch.status).to.equal('completed');

    // --- everything expires ---
    await waitUntil(
      () => allGone(p, [...ids.map((id) => `/v1/jobs/${id}`), `/v1/batches/${batch.id}`]),
      (TTL_S + 30) * 1000,
      'the jobs and the batch to expire',
    );
    // The dead workers leave the fleet's sorted set (trimmed by the live worker's heartbeat).
    const fleetKey = `${p.prefix}:{fleet}:workers`;
    await waitUntil(async () => (await redis.zcard(fleetKey)) <= 1, 90_000, 'dead workers to leave the fleet set');

    const keys = await listKeys(redis, p.prefix);
    const leftovers = keys.filter((x) => x.key.includes(envelopeId) || ids.some((id) => x.key.includes(id)) || x.key.includes(batch.id));
    expect(leftovers.filter((x) => x.pttl < 0).map((x) => x.key), 'keys of the killed work without a TTL').to.deep.equal([]);
    const b = bulkQueue(p.prefix, 'cubic', '1');
    const bulkBase = `${b.prefix}:${b.name}:`;
    const fixed = new Set(['meta', 'id', 'events', 'stalled-check']);
    const bulkJobs = keys.filter((x) => x.key.startsWith(bulkBase) && !fixed.has(x.key.slice(bulkBase.length)));
    expect(bulkJobs.map((x) => `${x.key.slice(bulkBase.length)} ${x.type} size=${x.size}`), 'bulk queue keys beyond its fixed ones').to.deep.equal([]);
    expect(await redis.zcard(k.deadlines), 'deadline entries left').to.equal(0);
    expect(await redis.llen(k.outbox), 'outbox entries left').to.equal(0);
    expect(await redis.hlen(k.index), 'job index entries left').to.equal(0);
  });
});
