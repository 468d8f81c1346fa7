import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { loadConfig } from '@infer/config';
import type { Batch, BatchResultLine, Job } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { EMBED_ROWS, embedSumReference, mlpReference } from '../scripts/build-models.js';
import { maxAbsDiff } from './helpers/batches.js';
import { flatten } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { deletePrefix, FIXTURE_MODELS, REPO_ROOT, SHIPPED_MODELS, TEST_KEY, uniquePrefix } from './helpers/platform.js';
import { OwnRedis, pings } from './helpers/redis-server.js';
import { elapse, waitUntil } from './helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * Chaos, bounded in time and on loopback only: steady single-job and bulk
 * load while worker processes are SIGKILLed and restarted, Redis itself is
 * killed and restarted (AOF on, fsync always, as a deployment that must lose
 * nothing it acknowledged runs it), and poison inputs arrive. At the end:
 * every accepted job has exactly one final status and one job.completed
 * event (one webhook-id, however many deliveries), every succeeded output
 * equals the reference, every batch has each index exactly once.
 */

/** Steps of chaos, 3.5 s apart under load: the third kills Redis, each other one SIGKILLs a worker. */
const CHAOS_STEPS = 5;

/** A client's pause after a refusal (the load's shape: time itself is the point here). */
const backOff = () => elapse(50, 'a client backing off after a refusal');
const CLIENTS = 6;
const WORKERS = 2;

describe('chaos: workers and Redis killed under load, poison inputs', function () {
  this.timeout(240_000);
  let repo: TempModelRepo;
  let redisDir: string;
  let redis: OwnRedis;
  let gateway: Gateway;
  let base: string;
  let receiver: WebhookReceiver<{ type: string; data: Job }>;
  const prefix = uniquePrefix('chaos');
  const workers = new Set<ChildProcess>();

  /** job.completed events received so far, by job id: the webhook-ids seen, and the status each said. */
  const completedEvents = () => {
    const completed = new Map<string, { ids: Set<string>; statuses: Set<string> }>();
    for (const { event, headers } of receiver.deliveries) {
      if (event.type !== 'job.completed') continue;
      const entry = completed.get(event.data.id) ?? { ids: new Set<string>(), statuses: new Set<string>() };
      entry.ids.add(String(headers['webhook-id']));
      entry.statuses.add(event.data.status);
      completed.set(event.data.id, entry);
    }
    return completed;
  };

  before(async () => {
    repo = tempModelRepo({ mlp: { from: path.join(SHIPPED_MODELS, 'mlp') }, 'embed-sum': { from: path.join(FIXTURE_MODELS, 'embed-sum') } });
    // An append-only file in a folder of its own: Redis is killed for real and started again on it.
    redisDir = mkdtempSync(path.join(os.tmpdir(), 'chaos-redis-'));
    redis = await OwnRedis.start(['--appendonly', 'yes', '--appendfsync', 'always', '--dir', redisDir]);
    receiver = await startWebhookReceiver();
    const config = loadConfig({
      REDIS_URL: redis.url,
      MODEL_REPOSITORY: repo.root,
      QUEUE_PREFIX: prefix,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      PORT: '0',
      HOST: '127.0.0.1',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      RATE_LIMIT_PER_SECOND: '100000',
    });
    gateway = await createGateway(config, silentLogger);
    base = `http://127.0.0.1:${await gateway.listen(0, '127.0.0.1')}`;
  });

  after(async () => {
    for (const w of workers) w.kill('SIGKILL');
    await gateway?.close().catch(() => undefined);
    await receiver?.close();
    if (redis && (await pings(redis.url))) await deletePrefix(redis.url, prefix);
    await redis?.stop();
    if (redisDir) rmSync(redisDir, { recursive: true, force: true });
    repo?.remove();
  });

  /** A worker process, as `npm run start:worker` runs it, SIGKILLed when the test says. */
  function startWorker(): ChildProcess {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'apps', 'worker', 'src', 'main.ts')], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        REDIS_URL: redis.url,
        QUEUE_PREFIX: prefix,
        MODEL_REPOSITORY: repo.root,
        WORKER_LOCK_MS: '2000',
        WORKER_METRICS_PORT: '0',
        WEBHOOK_ALLOW_PRIVATE: 'true',
        WEBHOOK_RETRY_DELAYS_MS: '200,500,1000,2000,4000',
        LOG_LEVEL: 'silent',
      },
      stdio: 'ignore',
    });
    workers.add(child);
    child.once('exit', () => workers.delete(child));
    return child;
  }

  const api = (pathname: string, init: RequestInit = {}) =>
    fetch(base + pathname, { ...init, headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', ...(init.headers ?? {}) } });

  it('ends every accepted job once, with one job.completed, right outputs, and every batch index once', async () => {
    for (let i = 0; i < WORKERS; i++) startWorker();
    const hook = receiver.url;
    /** Accepted jobs: id → what it should end as. */
    const accepted = new Map<string, { kind: 'mlp'; features: number[] } | { kind: 'embed'; ids: number[]; poison: boolean }>();
    const batches: Array<{ id: string; rows: number }> = [];
    let refused = 0;
    let seq = 0;
    // The load runs until the chaos has taken all its steps (a slow machine delays them; it does not skip them).
    let chaosDone = false;

    const client = async (): Promise<void> => {
      while (!chaosDone) {
        const n = seq++;
        const poison = n % 17 === 0;
        const embed = n % 5 === 0;
        const ids = poison ? [1, EMBED_ROWS + 3, 2, 0] : [n % EMBED_ROWS, (n + 3) % EMBED_ROWS, 1, 2];
        const features = Array.from({ length: 64 }, (_, k) => Math.sin(n + k));
        const body = embed ? { model: 'embed-sum', input: { ids }, webhook: hook } : { model: 'mlp', version: '2', input: { features }, webhook: hook };
        try {
          const res = await api('/v1/jobs', { method: 'POST', body: JSON.stringify(body), headers: n % 3 === 0 ? { prefer: 'wait=5' } : {} });
          const text = await res.text();
          if (res.status === 200 || res.status === 202) {
            accepted.set((JSON.parse(text) as Job).id, embed ? { kind: 'embed', ids, poison } : { kind: 'mlp', features });
          } else {
            refused++;
            await backOff(); // a client backing off from a 503, as Retry-After asks
          }
        } catch {
          refused++; // the connection dropped: not accepted
          await backOff();
        }
      }
    };

    const bulk = async (): Promise<void> => {
      while (!chaosDone) {
        const rows = 1500;
        const lines = Array.from({ length: rows }, (_, i) => JSON.stringify({ custom_id: `r${i}`, input: { features: Array.from({ length: 64 }, (_, k) => Math.cos(i + k)) } })).join('\n') + '\n';
        try {
          const res = await api('/v1/batches?model=mlp&version=2', { method: 'POST', body: lines, headers: { 'content-type': 'application/x-ndjson' } });
          if (res.status === 202) batches.push({ id: ((await res.json()) as Batch).id, rows });
          else await res.body?.cancel();
        } catch {
          /* not accepted (Redis was away): the next one may be */
        }
        // A batch every few seconds: the time between uploads is the load's shape, not a wait for state.
        // (An upload steps aside while interactive requests are in flight: under this load it takes a while.)
        await elapse(2500, 'the pause between batch uploads');
      }
    };

    const chaos = async (): Promise<{ workersKilled: number; redisRestarts: number }> => {
      let workersKilled = 0;
      let redisRestarts = 0;
      for (let step = 1; step <= CHAOS_STEPS; step++) {
        // A step every 3.5 s under load: the schedule is the load's shape, not a wait for state.
        await elapse(3500, 'the next chaos step');
        if (step === 3) {
          await redis.stop();
          redisRestarts++;
          await redis.start();
        } else {
          const victim = [...workers][step % workers.size];
          victim?.kill('SIGKILL');
          workersKilled++;
          startWorker();
        }
      }
      // Load goes on for 2 s after the last step, then stops.
      await elapse(2000, 'load after the last chaos step');
      chaosDone = true;
      return { workersKilled, redisRestarts };
    };

    const [{ workersKilled, redisRestarts }] = await Promise.all([chaos(), bulk(), ...Array.from({ length: CLIENTS }, client)]);

    // Every accepted job ends; read each once more at the end.
    const finals = new Map<string, Job>();
    await waitUntil(
      async () => {
        for (const id of accepted.keys()) {
          if (finals.has(id)) continue;
          const res = await api(`/v1/jobs/${id}`).catch(() => undefined);
          if (!res || res.status !== 200) return false;
          const job = (await res.json()) as Job;
          if (job.status !== 'succeeded' && job.status !== 'failed' && job.status !== 'canceled') return false;
          finals.set(id, job);
        }
        return true;
      },
      120_000,
      'every accepted job to end',
    );
    for (const b of batches) {
      await waitUntil(async () => ((await (await api(`/v1/batches/${b.id}`)).json()) as Batch).status === 'completed', 120_000, `batch ${b.id}`);
    }
    await waitUntil(
      () => {
        const completed = completedEvents();
        return [...accepted.keys()].every((id) => completed.has(id));
      },
      60_000,
      'a job.completed for every accepted job',
    );
    const completed = completedEvents();

    let wrong = 0;
    let duplicated = 0;
    let lost = 0;
    for (const [id, want] of accepted) {
      const job = finals.get(id);
      if (!job) {
        lost++;
        continue;
      }
      const events = completed.get(id);
      if (!events || events.ids.size !== 1) duplicated += events ? events.ids.size - 1 : 0;
      if (want.kind === 'embed' && want.poison) {
        if (job.status !== 'failed' || job.error?.code !== 'inference_failed') wrong++;
        continue;
      }
      if (job.status !== 'succeeded') {
        wrong++;
        continue;
      }
      const got = flatten(Object.values(job.output as Record<string, unknown>)[0]).map(Number);
      const expected = want.kind === 'mlp' ? Array.from(mlpReference(2, Float32Array.from(want.features))) : embedSumReference(want.ids);
      if (maxAbsDiff(got, expected) > 1e-5) wrong++;
    }
    let batchesComplete = 0;
    for (const b of batches) {
      const text = await (await api(`/v1/batches/${b.id}/results`)).text();
      const lines = text.trim().split('\n').map((l) => JSON.parse(l) as BatchResultLine);
      const indexes = lines.map((l) => l.index);
      if (indexes.length === b.rows && new Set(indexes).size === b.rows && indexes.every((x, i) => x === i)) batchesComplete++;
    }
    console.log(
      `      chaos: ${accepted.size} jobs accepted (${refused} refused or dropped while Redis was away), ${finals.size} ended, ${lost} lost, ` +
        `${duplicated} duplicated job.completed events, ${wrong} wrong outputs; ${batchesComplete}/${batches.length} batches complete with every index once; ` +
        `${workersKilled} workers SIGKILLed, Redis killed ${redisRestarts}×`,
    );
    expect(accepted.size).to.be.greaterThan(30);
    expect(lost).to.equal(0);
    expect(duplicated).to.equal(0);
    expect(wrong).to.equal(0);
    expect(batches.length).to.be.at.least(1);
    expect(batchesComplete).to.equal(batches.length);
    expect(workersKilled).to.equal(CHAOS_STEPS - 1);
    expect(redisRestarts).to.equal(1);
  });
});
