import { cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { expect } from 'chai';
import { interactiveKeys, type Job, type ModelDescription, type ModelEvent, type Rollout } from '@infer/contract';
import { Redis } from 'ioredis';
import { silentLogger } from '@infer/logger';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { ElemType, encodeModel, initializer, node, valueInfo } from '../scripts/lib/onnx-builder.js';
import { mlpFeatures, readResults, streamedUpload, toNdjson, uploadNdjson, waitForBatchEnd } from './helpers/batches.js';
import { expectProblem } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { SHIPPED_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * The model lifecycle as an operator lives it: versions copied into and
 * removed from a running repository, routing changed under load, guarded
 * rollouts, a corrupt model, and the admin routes' keys. The worker has a
 * repository of its own (as a separate process would), polling every 0.2 s.
 */

const ADMIN = 'admin-secret';
// The load here is one tenant's: no rate limit in the way of what is measured.
const env = { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0.2', WORKER_METRICS_PORT: '0', RATE_LIMIT_PER_SECOND: '1000000' };
const SERVED_MLP = path.join(SHIPPED_MODELS, 'mlp');

/** mlp's signature (features [n,64] → probabilities [n,4]); loads fine, throws on every run (a Gather index past the end). */
function failingMlp(): Uint8Array {
  return encodeModel({
    name: 'mlp_that_throws',
    inputs: [valueInfo('features', ElemType.FLOAT, ['batch', 64])],
    outputs: [valueInfo('probabilities', ElemType.FLOAT, ['batch', 4])],
    initializers: [initializer('columns', ElemType.INT64, [4], [0, 1, 2, 64])],
    nodes: [node('Gather', ['features', 'columns'], ['probabilities'], { axis: 1 })],
  });
}

/** A repository with real copies of mlp's version folders, so versions can be added and removed while it serves. */
function mlpRepo(versions: Record<string, 'v1' | 'v2' | Uint8Array>): TempModelRepo {
  const repo = tempModelRepo({});
  for (const [version, what] of Object.entries(versions)) addVersion(repo, version, what);
  cpSync(path.join(SERVED_MLP, 'config.json'), path.join(repo.root, 'mlp', 'config.json'));
  return repo;
}

function addVersion(repo: TempModelRepo, version: string, what: 'v1' | 'v2' | Uint8Array): void {
  const dir = path.join(repo.root, 'mlp', version);
  if (typeof what === 'string') {
    cpSync(path.join(SERVED_MLP, what.slice(1)), dir, { recursive: true, dereference: true });
  } else {
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'model.onnx'), what);
  }
}

const admin = (p: { baseUrl: string }, pathname: string, init: RequestInit & { key?: string | null } = {}) => {
  const { key = ADMIN, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (key !== null) headers.set('authorization', `Bearer ${key}`);
  if (rest.body !== undefined) headers.set('content-type', 'application/json');
  return fetch(p.baseUrl + pathname, { ...rest, headers });
};

async function describeModel(p: TestPlatform): Promise<ModelDescription> {
  const res = await p.api('/v1/models/mlp');
  expect(res.status).to.equal(200);
  return (await res.json()) as ModelDescription;
}

async function setRouting(p: TestPlatform, weights: Record<string, number> | null): Promise<ModelDescription> {
  const res = await admin(p, '/v1/models/mlp/routing', { method: 'PUT', body: JSON.stringify({ weights }) });
  expect(res.status, await res.clone().text()).to.equal(200);
  return (await res.json()) as ModelDescription;
}

async function events(p: { baseUrl: string }, limit = 100): Promise<ModelEvent[]> {
  const res = await admin(p, `/v1/models/mlp/events?limit=${limit}`);
  expect(res.status).to.equal(200);
  return ((await res.json()) as { data: ModelEvent[] }).data;
}

const stateOf = (m: ModelDescription, version: string) => m.versions_detail.find((d) => d.version === version)?.state;

/** One client's record of one job. */
interface Sent {
  sentAt: number;
  answeredAt: number;
  http: number;
  acceptedVersion?: string;
  job?: Job;
}

/**
 * Clients posting unpinned mlp jobs with `Prefer: wait` until stopped, each
 * job followed to its end: what an application does while an operator ships
 * a model under it.
 */
class Load {
  readonly sent: Sent[] = [];
  private stopped = false;
  private readonly running: Promise<void>[];

  constructor(
    private readonly baseUrl: () => string,
    clients: number,
  ) {
    this.running = Array.from({ length: clients }, (_, c) => this.client(c));
  }

  private async client(c: number): Promise<void> {
    for (let i = 0; !this.stopped; i++) {
      const s: Sent = { sentAt: Date.now(), answeredAt: 0, http: 0 };
      this.sent.push(s);
      try {
        const res = await fetch(`${this.baseUrl()}/v1/jobs`, {
          method: 'POST',
          headers: { authorization: 'Bearer test-key-a', 'content-type': 'application/json', prefer: 'wait=10' },
          body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(c * 100_000 + i) } }),
        });
        s.answeredAt = Date.now();
        s.http = res.status;
        if (res.status !== 200 && res.status !== 202) continue;
        let job = (await res.json()) as Job;
        s.acceptedVersion = job.version;
        while (job.status === 'queued' || job.status === 'running') {
          const polled = await fetch(`${this.baseUrl()}/v1/jobs/${job.id}`, { headers: { authorization: 'Bearer test-key-a', prefer: 'wait=10' } });
          job = (await polled.json()) as Job;
        }
        s.job = job;
      } catch {
        s.answeredAt = Date.now();
        s.http = -1;
      }
    }
  }

  /** Jobs that ended, so far. */
  ended(): number {
    return this.sent.filter((s) => s.job).length;
  }

  /** Wait for `n` more jobs to end. */
  async more(n: number, timeoutMs = 30_000): Promise<void> {
    const target = this.ended() + n;
    await waitUntil(() => this.ended() >= target, timeoutMs, `${n} more jobs`);
  }

  async stop(): Promise<Sent[]> {
    this.stopped = true;
    await Promise.all(this.running);
    return this.sent;
  }
}

describe('model lifecycle: a live repository, routing and rollouts', function () {
  this.timeout(120_000);
  let repo: TempModelRepo | undefined;
  let p: TestPlatform | undefined;
  let worker: InferenceWorker | undefined;
  const extraGateways: Gateway[] = [];

  /** A gateway with no worker of its own, and a worker with its own repository, as separate processes would be. */
  async function start(versions: Record<string, 'v1' | 'v2' | Uint8Array>, more: Record<string, string> = {}): Promise<TestPlatform> {
    repo = mlpRepo(versions);
    p = await startPlatform({ models: repo.root, worker: false, env: { ...env, ...more } });
    worker = await createWorker(p.config, silentLogger);
    await p.gateway.catalog.refresh();
    return p;
  }

  afterEach(async () => {
    for (const g of extraGateways.splice(0)) await g.close();
    await worker?.close();
    worker = undefined;
    await p?.close();
    p = undefined;
    repo?.remove();
    repo = undefined;
  });

  it('ships a new version under steady load: copied in, ready, 10% then 100%, the old folder removed; no job fails, none 5xx, none served by an unloaded version', async () => {
    const p = await start({ '1': 'v1' });
    // Pin the routing to 1 first: otherwise version 2 takes all traffic as soon as it is ready (blue, then green).
    const phases: Array<{ from: number; to: number; versions: string[] }> = [];
    const change = async (what: () => Promise<unknown>, versions: string[]) => {
      const from = Date.now();
      await what();
      const to = Date.now();
      if (phases.length) phases[phases.length - 1]!.to = to;
      phases.push({ from, to: Infinity, versions });
    };
    await change(() => setRouting(p, { '1': 100 }), ['1']);
    const load = new Load(() => p.baseUrl, 8);
    try {
      await load.more(300);
      addVersion(repo!, '2', 'v2');
      await waitUntil(async () => stateOf(await describeModel(p), '2') === 'ready', 20_000, 'version 2 ready');
      await load.more(300);
      expect(load.sent.filter((s) => s.job).every((s) => s.job!.version === '1'), 'nothing goes to 2 while the routing says 1').to.equal(true);
      await change(() => setRouting(p, { '1': 90, '2': 10 }), ['1', '2']);
      await load.more(1000);
      await change(() => setRouting(p, { '2': 100 }), ['2']);
      await load.more(300);
      rmSync(path.join(repo!.root, 'mlp', '1'), { recursive: true });
      await waitUntil(async () => (await events(p)).some((e) => e.type === 'version_unloaded' && e.data.version === '1' && e.data.state === 'unloaded'), 30_000, 'version 1 unloaded');
      await waitUntil(async () => stateOf(await describeModel(p), '1') === undefined, 10_000, 'version 1 gone from the model');
      await load.more(300);
    } finally {
      await load.stop();
    }
    const sent = load.sent;
    expect(sent.length).to.be.greaterThan(2000);
    const bad = sent.filter((s) => s.http !== 200 && s.http !== 202);
    expect(bad.map((s) => s.http), 'every submit accepted').to.deep.equal([]);
    const failed = sent.filter((s) => s.job && s.job.status !== 'succeeded');
    expect(failed.map((s) => s.job!.error), 'no job failed').to.deep.equal([]);
    // Every job's version was routable when it was accepted, and is the one its 202/200 named.
    for (const s of sent.filter((x) => x.job)) {
      expect(s.job!.version).to.equal(s.acceptedVersion);
      const allowed = new Set(phases.filter((ph) => ph.from <= s.answeredAt && ph.to >= s.sentAt).flatMap((ph) => ph.versions));
      expect(allowed.has(s.job!.version), `job ${s.job!.id} (${s.job!.version}) accepted between ${s.sentAt} and ${s.answeredAt}`).to.equal(true);
    }
    const byVersion = (v: string) => sent.filter((s) => s.job?.version === v).length;
    expect(byVersion('1')).to.be.greaterThan(0);
    expect(byVersion('2')).to.be.greaterThan(0);
    // No job was served by version 1 after it was unloaded.
    const unloadedAt = Date.parse((await events(p)).find((e) => e.type === 'version_unloaded' && e.data.state === 'unloaded')!.at);
    const lastOnOne = Math.max(...sent.filter((s) => s.job?.version === '1').map((s) => Date.parse(s.job!.completed_at!)));
    expect(lastOnOne).to.be.at.most(unloadedAt);
    // Pinning the unloaded version is 404; the events tell the story.
    await expectProblem(await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: '1', input: { features: mlpFeatures(1) } }) }), 404, 'version_not_found');
    const types = (await events(p)).map((e) => `${e.type}${e.data.state ? `:${String(e.data.state)}` : ''}`).reverse();
    expect(types).to.include.members(['routing_changed', 'version_loaded:ready', 'version_unloaded:draining', 'version_unloaded:unloaded']);
  });

  it('splits 10,000 unpinned jobs 90/10 by the routing weights, within ±2 points', async () => {
    const p = await start({ '1': 'v1', '2': 'v2' });
    await waitUntil(async () => stateOf(await describeModel(p), '1') === 'ready' && stateOf(await describeModel(p), '2') === 'ready', 20_000, 'both ready');
    const model = await setRouting(p, { '1': 90, '2': 10 });
    expect(model.routing).to.deep.equal({ '1': 90, '2': 10 });
    expect(model.routing_source).to.equal('explicit');
    const counts: Record<string, number> = {};
    const ids: Array<[string, string]> = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < 10_000) {
          const i = next++;
          const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(i) } }) });
          expect(res.status).to.equal(202);
          const job = (await res.json()) as Job;
          counts[job.version] = (counts[job.version] ?? 0) + 1;
          if (i % 500 === 0) ids.push([job.id, job.version]);
        }
      }),
    );
    expect(counts['1']! + counts['2']!).to.equal(10_000);
    expect(Math.abs(counts['2']! / 100 - 10)).to.be.at.most(2);
    // The version the 202 named is the one that ran it.
    for (const [id, version] of ids) {
      const res = await p.api(`/v1/jobs/${id}`, { headers: { prefer: 'wait=20' } });
      const job = (await res.json()) as Job;
      expect(job.status).to.equal('succeeded');
      expect(job.version).to.equal(version);
    }
  });

  it('rolls a failing candidate back by itself within one step, naming the error rate; a healthy one completes, though the gateway that started it is gone', async () => {
    const p = await start({ '1': 'v1' });
    await setRouting(p, { '1': 100 });
    addVersion(repo!, '2', failingMlp());
    await waitUntil(async () => stateOf(await describeModel(p), '2') === 'ready', 20_000, 'the failing version loads fine');
    const load = new Load(() => p.baseUrl, 4);
    try {
      const res = await admin(p, '/v1/models/mlp/rollouts', { method: 'POST', body: JSON.stringify({ version: '2', steps: [50, 100], step_seconds: 1 }) });
      expect(res.status, await res.clone().text()).to.equal(201);
      const started = (await res.json()) as Rollout;
      expect(started).to.include({ model: 'mlp', version: '2', state: 'running', step: 0, max_error_rate: 0.01, max_p50_latency_ratio: 2 });
      expect(started.from.routing).to.deep.equal({ '1': 100 });
      expect((await describeModel(p)).routing).to.deep.equal({ '1': 50, '2': 50 });
      // One rollout per model.
      await expectProblem(await admin(p, '/v1/models/mlp/rollouts', { method: 'POST', body: JSON.stringify({ version: '2', steps: [100], step_seconds: 1 }) }), 409, 'conflict');
      const ended = await waitUntil(
        async () => {
          const r = (await (await admin(p, `/v1/models/mlp/rollouts/${started.id}`)).json()) as Rollout;
          return r.state === 'running' ? undefined : r;
        },
        30_000,
        'the rollout to end',
      );
      expect(ended.state).to.equal('rolled_back');
      expect(ended.step, 'rolled back after its first step').to.equal(0);
      expect(ended.reason).to.match(/error rate/);
      // Whichever process moved it, every gateway sees the change within a second.
      await waitUntil(async () => JSON.stringify((await describeModel(p)).routing) === JSON.stringify({ '1': 100 }), 2000, 'the routing back as it was');
      const log = await events(p);
      const rolledBack = log.find((e) => e.type === 'rollout_rolled_back')!;
      expect(rolledBack.actor).to.equal(`rollout:${started.id}`);
      expect(log.some((e) => e.type === 'rollout_started' && e.actor === 'ops')).to.equal(true);
      await load.more(50);
    } finally {
      await load.stop();
    }
    // A healthy candidate: version 3, a copy of mlp 2. The rollout goes on after the gateway that started it closes.
    addVersion(repo!, '3', 'v2');
    await waitUntil(async () => stateOf(await describeModel(p), '3') === 'ready', 20_000, 'version 3 ready');
    const other = await createGateway(p.config, silentLogger);
    extraGateways.push(other);
    const otherUrl = `http://127.0.0.1:${await other.listen(0, '127.0.0.1')}`;
    const res = await admin(p, '/v1/models/mlp/rollouts', {
      method: 'POST',
      // A generous latency limit: this test is about the steps, not this machine's noise.
      body: JSON.stringify({ version: '3', steps: [30, 100], step_seconds: 1, max_p50_latency_ratio: 10 }),
    });
    expect(res.status, await res.clone().text()).to.equal(201);
    const healthy = (await res.json()) as Rollout;
    await p.gateway.close();
    const load2 = new Load(() => otherUrl, 4);
    try {
      const done = await waitUntil(
        async () => {
          const r = (await (await admin({ baseUrl: otherUrl }, `/v1/models/mlp/rollouts/${healthy.id}`)).json()) as Rollout;
          return r.state === 'running' ? undefined : r;
        },
        30_000,
        'the healthy rollout to end',
      );
      expect(done.state, done.reason ?? '').to.equal('completed');
      expect(done.step).to.equal(1);
    } finally {
      await load2.stop();
    }
    const model = await waitUntil(
      async () => {
        const m = (await (await fetch(`${otherUrl}/v1/models/mlp`, { headers: { authorization: 'Bearer test-key-a' } })).json()) as ModelDescription;
        return JSON.stringify(m.routing) === JSON.stringify({ '3': 100 }) ? m : undefined;
      },
      2000,
      'all traffic on 3',
    );
    expect(model.default_version).to.equal('3');
    const types = (await events({ baseUrl: otherUrl })).map((e) => e.type);
    expect(types).to.include.members(['rollout_step', 'rollout_completed']);
    const list = (await (await admin({ baseUrl: otherUrl }, '/v1/models/mlp/rollouts')).json()) as { data: Rollout[] };
    expect(list.data.map((r) => r.state)).to.deep.equal(['completed', 'rolled_back']);
  });

  it('keeps an unloaded version until the batch accepted for it has ended: every row runs on it', async () => {
    const p = await start({ '1': 'v1', '2': 'v2' });
    await waitUntil(async () => stateOf(await describeModel(p), '1') === 'ready', 20_000, 'version 1 ready');
    const rows = 3000;
    const res = await uploadNdjson(p, toNdjson(Array.from({ length: rows }, (_, i) => ({ custom_id: `r${i}`, input: { features: mlpFeatures(i) } }))), 'model=mlp&version=1');
    expect(res.status, await res.clone().text()).to.equal(202);
    const { id } = (await res.json()) as { id: string };
    const unloaded = await admin(p, '/v1/models/mlp/versions/1/unload', { method: 'POST' });
    expect(unloaded.status).to.equal(202);
    const batch = await waitForBatchEnd(p, id, 60_000);
    expect(batch.status).to.equal('completed');
    expect(batch.request_counts).to.deep.include({ total: rows, succeeded: rows, failed: 0 });
    const results = await readResults(p, id);
    expect(results.filter((r) => r.status === 'succeeded')).to.have.length(rows);
    // Only then is it let go.
    await waitUntil(async () => stateOf(await describeModel(p), '1') === undefined, 20_000, 'version 1 unloaded');
    const log = await events(p);
    const unloadedAt = Date.parse(log.find((e) => e.type === 'version_unloaded' && e.data.state === 'unloaded')!.at);
    expect(unloadedAt).to.be.at.least(Date.parse(batch.completed_at!));
  });

  it('keeps an unloaded version for a batch whose upload began before the unload and ends after it: every row runs on it', async () => {
    const p = await start({ '1': 'v1', '2': 'v2' });
    await waitUntil(async () => stateOf(await describeModel(p), '1') === 'ready', 20_000, 'version 1 ready');
    const line = (i: number) => JSON.stringify({ custom_id: `r${i}`, input: { features: mlpFeatures(i) } }) + '\n';
    const { req, answer } = streamedUpload(p, 'model=mlp&version=1');
    try {
      await uploadAcrossTheUnload(p, req, answer, line);
    } finally {
      req.destroy(); // a failure part-way must not leave the upload holding the gateway's close
    }
  });

  async function uploadAcrossTheUnload(p: TestPlatform, req: http.ClientRequest, answer: Promise<{ status: number; body: string }>, line: (i: number) => string): Promise<void> {
    // A few lines, fewer than a chunk: nothing is queued for version 1 yet.
    req.write(line(0) + line(1) + line(2));
    const listed = await waitUntil(async () => ((await (await p.api('/v1/batches')).json()) as { data: Array<{ id: string }> }).data[0], 10_000, 'the upload to be recorded');
    expect((await admin(p, '/v1/models/mlp/versions/1/unload', { method: 'POST' })).status).to.equal(202);
    // The worker closes the queue after its grace, then looks for work left: it must find the upload.
    const redis = new Redis(p.config.redisUrl);
    try {
      const meta = interactiveKeys(p.prefix, 'mlp', '1').meta;
      await waitUntil(async () => (await redis.hexists(meta, 'closed')) === 1, 20_000, "version 1's queue closed");
    } finally {
      redis.disconnect();
    }
    await worker!.lookAtModels();
    await worker!.lookAtModels();
    for (let i = 3; i < 40; i++) req.write(line(i));
    req.end();
    const res = await answer;
    expect(res.status, res.body).to.equal(202);
    expect((JSON.parse(res.body) as { id: string }).id).to.equal(listed.id);
    const batch = await waitForBatchEnd(p, listed.id, 30_000);
    expect({ status: batch.status, counts: batch.request_counts }).to.deep.include({ status: 'completed', counts: { total: 40, succeeded: 40, failed: 0, canceled: 0 } });
    // Only then is it let go.
    await waitUntil(async () => stateOf(await describeModel(p), '1') === undefined, 20_000, 'version 1 unloaded');
  }

  it('refuses (503) an upload that finds its version\'s queue already closed, and leaves nothing behind', async () => {
    const p = await start({ '1': 'v1', '2': 'v2' });
    await waitUntil(async () => stateOf(await describeModel(p), '1') === 'ready', 20_000, 'version 1 ready');
    // A gateway whose view is stale (it still routes to 1) after the workers closed 1's queue.
    const redis = new Redis(p.config.redisUrl);
    try {
      await redis.hset(interactiveKeys(p.prefix, 'mlp', '1').meta, 'closed', String(Date.now()));
      const res = await uploadNdjson(p, toNdjson([{ custom_id: 'a', input: { features: mlpFeatures(1) } }]), 'model=mlp&version=1');
      await expectProblem(res, 503, 'unavailable');
      expect(((await (await p.api('/v1/batches')).json()) as { data: unknown[] }).data).to.deep.equal([]);
    } finally {
      await redis.hdel(interactiveKeys(p.prefix, 'mlp', '1').meta, 'closed');
      redis.disconnect();
    }
  });

  it('marks a version that cannot load failed, with why; the others keep serving', async () => {
    const p = await start({ '1': 'v1', '2': 'v2' });
    addVersion(repo!, '7', new Uint8Array(Buffer.from('this is not an ONNX model')));
    const model = await waitUntil(
      async () => {
        const m = await describeModel(p);
        return stateOf(m, '7') === 'failed' ? m : undefined;
      },
      20_000,
      'version 7 failed',
    );
    const error = model.versions_detail.find((d) => d.version === '7')!.error;
    expect(error).to.be.a('string').and.not.equal('');
    expect(error, 'no server path in what tenants see').to.not.include(repo!.root);
    expect(model.versions).to.deep.equal(['1', '2']);
    expect(model.routing).to.deep.equal({ '2': 100 });
    const job = await p.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=10' }, body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(3) } }) });
    expect(((await job.json()) as Job).status).to.equal('succeeded');
    await expectProblem(await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: '7', input: { features: mlpFeatures(3) } }) }), 404, 'version_not_found');
    await waitUntil(async () => (await events(p)).some((e) => e.type === 'version_failed' && e.data.version === '7'), 10_000, 'version_failed event');
  });

  it('with MODEL_POLL_SECONDS=0 looks at the folder only when an admin loads a version (other admin changes do not)', async () => {
    const p = await start({ '1': 'v1', '2': 'v2' }, { MODEL_POLL_SECONDS: '0' });
    await waitUntil(async () => stateOf(await describeModel(p), '2') === 'ready', 20_000, 'version 2 ready');
    addVersion(repo!, '3', 'v2');
    await setRouting(p, { '1': 50, '2': 50 });
    await setRouting(p, null);
    // Both processes look at the shared state after those changes: 3 is still not loaded anywhere.
    await worker!.lookAtModels();
    await p.gateway.catalog.refresh();
    expect(stateOf(await describeModel(p), '3')).to.equal(undefined);
    const res = await admin(p, '/v1/models/mlp/versions/3/load', { method: 'POST' });
    expect(res.status).to.equal(202);
    await waitUntil(async () => stateOf(await describeModel(p), '3') === 'ready', 20_000, 'version 3 ready');
    // An admin key reads models as a tenant does.
    const asAdmin = await admin(p, '/v1/models/mlp');
    expect(asAdmin.status).to.equal(200);
    expect(stateOf((await asAdmin.json()) as ModelDescription, '3')).to.equal('ready');
    expect((await admin(p, '/v1/models')).status).to.equal(200);
  });

  it('admin routes: 401 without a key or with an unknown one, 403 with a tenant key; invalid routing is 422; every change is in the events log under the admin name', async () => {
    const p = await start({ '1': 'v1', '2': 'v2' });
    await waitUntil(async () => stateOf(await describeModel(p), '2') === 'ready', 20_000, 'version 2 ready');
    const routes: Array<[string, string, unknown?]> = [
      ['PUT', '/v1/models/mlp/routing', { weights: null }],
      ['POST', '/v1/models/mlp/versions/1/load'],
      ['POST', '/v1/models/mlp/versions/1/unload'],
      ['POST', '/v1/models/mlp/rollouts', { version: '2', steps: [100], step_seconds: 1 }],
      ['GET', '/v1/models/mlp/rollouts'],
      ['GET', '/v1/models/mlp/events'],
    ];
    for (const [method, route, body] of routes) {
      const init = { method, ...(body ? { body: JSON.stringify(body) } : {}) };
      await expectProblem(await admin(p, route, { ...init, key: null }), 401, 'unauthorized');
      await expectProblem(await admin(p, route, { ...init, key: 'not-a-key' }), 401, 'unauthorized');
      await expectProblem(await admin(p, route, { ...init, key: 'test-key-a' }), 403, 'forbidden');
    }
    for (const weights of [{ '1': 50, '2': 40 }, { '1': 110, '2': -10 }, { '1': 50, '9': 50 }, { '1': 50.5, '2': 49.5 }]) {
      await expectProblem(await admin(p, '/v1/models/mlp/routing', { method: 'PUT', body: JSON.stringify({ weights }) }), 422, 'invalid_routing');
    }
    await expectProblem(await admin(p, '/v1/models/mlp/routing', { method: 'PUT', body: JSON.stringify({ nope: 1 }) }), 400, 'invalid_input');
    await expectProblem(await admin(p, '/v1/models/nope/routing', { method: 'PUT', body: JSON.stringify({ weights: null }) }), 404, 'model_not_found');
    // An admin's method no route takes: its 404 names the whole path (not the part after the router's mount).
    const noRoute = await expectProblem(await admin(p, '/v1/models/mlp', { method: 'DELETE' }), 404, 'not_found');
    expect(noRoute.detail).to.equal('No route for DELETE /v1/models/mlp');
    // Changes: routing, back to default, unload and load again.
    expect((await setRouting(p, { '1': 25, '2': 75 })).routing).to.deep.equal({ '1': 25, '2': 75 });
    const back = await setRouting(p, null);
    expect(back).to.include({ routing_source: 'default', default_version: '2' });
    expect(back.routing).to.deep.equal({ '2': 100 });
    const unloaded = await admin(p, '/v1/models/mlp/versions/1/unload', { method: 'POST' });
    expect(unloaded.status).to.equal(202);
    expect(stateOf((await unloaded.json()) as ModelDescription, '1')).to.equal('draining');
    await waitUntil(async () => stateOf(await describeModel(p), '1') === undefined, 20_000, 'version 1 unloaded');
    const loaded = await admin(p, '/v1/models/mlp/versions/1/load', { method: 'POST' });
    expect(loaded.status).to.equal(202);
    await waitUntil(async () => stateOf(await describeModel(p), '1') === 'ready', 20_000, 'version 1 ready again');
    const job = await p.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=10' }, body: JSON.stringify({ model: 'mlp', version: '1', input: { features: mlpFeatures(5) } }) });
    expect(((await job.json()) as Job).status).to.equal('succeeded');
    const log = await events(p);
    const mine = log.filter((e) => e.actor === 'ops').map((e) => `${e.type}:${String(e.data.state ?? '')}`);
    expect(mine).to.include.members(['routing_changed:', 'version_unloaded:draining', 'version_loaded:loading']);
    expect(JSON.stringify(log)).to.not.include(ADMIN);
    for (const e of log) expect(Date.parse(e.at)).to.be.a('number').and.not.NaN;
    // Pagination: newest first, `after` an event id.
    const page = (await (await admin(p, `/v1/models/mlp/events?limit=2&after=${log[0]!.id}`)).json()) as { data: ModelEvent[]; has_more: boolean };
    expect(page.data.map((e) => e.id)).to.deep.equal(log.slice(1, 3).map((e) => e.id));
    // A limit in digits only (a numeric coercion would read 0x10 as 16).
    for (const bad of ['0x10', '1e1', '0', '101']) expect((await admin(p, `/v1/models/mlp/events?limit=${bad}`)).status, `limit=${bad}`).to.equal(400);
  });
});
