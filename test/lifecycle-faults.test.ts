/**
 * The model lifecycle and the CLI at their edges, where no other test looks. A model.onnx written in place in pieces; a version one
 * worker cannot load and another can; a rollout step held without traffic;
 * the events log paged while it is written; the CLI's network failures,
 * stdin input and Ctrl-C during a wait.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { ModelDescription } from '@infer/contract';
import { loadConfig } from '@infer/config';
import { silentLogger } from '@infer/logger';
import { ISO8601_LUA, ModelControl, advanceRollouts, newRolloutId, stepRouting, type StoredRollout } from '@infer/model-control';
import { createGateway, type Gateway } from '../apps/gateway/src/index.js';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { runCliProcess } from './helpers/cli.js';
import { expectProblem } from './helpers/jobs.js';
import { mlpFeatures } from './helpers/batches.js';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { REPO_ROOT, SHIPPED_MODELS, TEST_KEY, TEST_REDIS_URL, deletePrefix, startPlatform, uniquePrefix, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

const ADMIN = 'lifecycle-admin-key';
const SERVED_MLP = path.join(SHIPPED_MODELS, 'mlp');
const env = { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0.2', WORKER_METRICS_PORT: '0' };

async function describeModel(p: { api: TestPlatform['api'] }): Promise<ModelDescription> {
  const res = await p.api('/v1/models/mlp');
  expect(res.status).to.equal(200);
  return (await res.json()) as ModelDescription;
}
const detailOf = (m: ModelDescription, v: string) => m.versions_detail.find((d) => d.version === v);

describe('lifecycle: versions under faults', function () {
  this.timeout(90_000);
  const repos: TempModelRepo[] = [];
  let p: TestPlatform | undefined;
  const workers: InferenceWorker[] = [];

  afterEach(async () => {
    for (const w of workers.splice(0)) await w.close();
    await p?.close();
    p = undefined;
    for (const r of repos.splice(0)) r.remove();
  });

  it('a model.onnx written in place, in pieces, is failed while partial and ready once whole (its mtime moved); the other versions serve on', async () => {
    const repo = servedMlpRepo(['1']);
    repos.push(repo);
    p = await startPlatform({ models: repo.root, worker: false, env });
    workers.push(await createWorker(p.config, silentLogger));
    await p.gateway.catalog.refresh();
    await waitUntil(async () => detailOf(await describeModel(p!), '1')?.state === 'ready', 20_000, 'version 1 ready');
    const bytes = readFileSync(path.join(SERVED_MLP, '2', 'model.onnx'));
    const file = path.join(repo.root, 'mlp', '2', 'model.onnx');
    mkdirSync(path.dirname(file));
    writeFileSync(file, bytes.subarray(0, Math.floor(bytes.length / 3)));
    const failed = await waitUntil(async () => {
      const d = detailOf(await describeModel(p!), '2');
      return d?.state === 'failed' ? d : undefined;
    }, 20_000, 'the partial version 2 failed');
    expect(failed.error).to.be.a('string').and.not.equal('');
    expect(failed.error, 'no server path in what tenants see').to.not.include(repo.root);
    await expectProblem(await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: '2', input: { features: mlpFeatures(1) } }) }), 404, 'version_not_found');
    appendFileSync(file, bytes.subarray(Math.floor(bytes.length / 3)));
    await waitUntil(async () => detailOf(await describeModel(p!), '2')?.state === 'ready', 20_000, 'version 2 ready once whole');
    const res = await p.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=10' }, body: JSON.stringify({ model: 'mlp', version: '2', input: { features: mlpFeatures(2) } }) });
    expect(((await res.json()) as { status: string }).status).to.equal('succeeded');
  });

  it('a version one worker cannot load and another can: ready (workers_ready 1, no error), its jobs run; once the good worker leaves: failed with the other\'s error, pinned jobs 404, unpinned ones go to the version left', async () => {
    const good = servedMlpRepo(['1', '2']);
    const bad = servedMlpRepo(['1']);
    repos.push(good, bad);
    mkdirSync(path.join(bad.root, 'mlp', '2'));
    writeFileSync(path.join(bad.root, 'mlp', '2', 'model.onnx'), 'a copy cut short on this machine');
    p = await startPlatform({ models: good.root, worker: false, env });
    const goodWorker = await createWorker(p.config, silentLogger);
    workers.push(goodWorker);
    workers.push(await createWorker(loadConfig({ ...envOf(p), MODEL_REPOSITORY: bad.root }), silentLogger));
    await p.gateway.catalog.refresh();
    const m = await waitUntil(async () => {
      const d = await describeModel(p!);
      return detailOf(d, '2')?.state === 'ready' && detailOf(d, '1')?.workers_ready === 2 ? d : undefined;
    }, 20_000, 'version 2 ready on one worker, version 1 on both');
    expect(detailOf(m, '2')).to.deep.equal({ version: '2', state: 'ready', workers_ready: 1 });
    expect(m.routing).to.deep.equal({ '2': 100 });
    for (let i = 0; i < 10; i++) {
      const res = await p.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=10' }, body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(i) } }) });
      const job = (await res.json()) as { status: string; version: string };
      expect(job).to.include({ status: 'succeeded', version: '2' });
    }
    // The worker that had it leaves.
    await goodWorker.close();
    workers.splice(workers.indexOf(goodWorker), 1);
    const after = await waitUntil(async () => {
      await p!.gateway.catalog.refresh();
      const d = await describeModel(p!);
      return detailOf(d, '2')?.state === 'failed' ? d : undefined;
    }, 20_000, 'version 2 failed once no live worker has it');
    expect(detailOf(after, '2')!.error).to.be.a('string').and.not.equal('');
    expect(after.routing).to.deep.equal({ '1': 100 });
    await expectProblem(await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', version: '2', input: { features: mlpFeatures(1) } }) }), 404, 'version_not_found');
    const res = await p.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=10' }, body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(3) } }) });
    expect((await res.json()) as { status: string; version: string }).to.include({ status: 'succeeded', version: '1' });
  });
});

/** The environment a platform was started with, to start a worker on another folder. */
function envOf(p: TestPlatform): Record<string, string> {
  return {
    REDIS_URL: p.config.redisUrl,
    QUEUE_PREFIX: p.prefix,
    API_KEYS: `tenant-a:${TEST_KEY}`,
    HOST: '127.0.0.1',
    ...env,
  };
}

describe('lifecycle: a rollout started through another gateway right after a routing change', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let other: Gateway;
  let otherUrl: string;
  before(async () => {
    p = await startPlatform({ env: { ADMIN_API_KEYS: `ops:${ADMIN}` } });
    other = await createGateway(p.config, silentLogger);
    otherUrl = `http://127.0.0.1:${await other.listen(0, '127.0.0.1')}`;
  });
  after(async () => {
    await other?.close();
    await p?.close();
  });

  it('starts from the routing in effect (just set through the first gateway), not the second gateway\'s view of a second ago', async () => {
    const asAdmin = (base: string, pathname: string, method: string, body: unknown) =>
      fetch(base + pathname, { method, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    await waitUntil(async () => {
      const m = (await (await p.api('/v1/models/mlp')).json()) as { versions_detail: Array<{ state: string }> };
      return m.versions_detail.filter((d) => d.state === 'ready').length === 2;
    }, 20_000, 'mlp 1 and 2 ready');
    // Both gateways have looked: the default routing (the highest ready version, 2, takes all).
    await other.catalog.refresh();
    expect((await asAdmin(p.baseUrl, '/v1/models/mlp/routing', 'PUT', { weights: { '1': 100 } })).status).to.equal(200);
    const res = await asAdmin(otherUrl, '/v1/models/mlp/rollouts', 'POST', { version: 2, steps: [10, 100], step_seconds: 60 });
    const text = await res.text();
    expect(res.status, text).to.equal(201);
    expect((JSON.parse(text) as { from: { routing: Record<string, number> } }).from.routing).to.deep.equal({ '1': 100 });
  });
});

/** A rollout of mlp version 2 (10% then 100%, from version 1 taking all), running since `now`. */
function runningRollout(stepSeconds: number, now = Date.now()): StoredRollout {
  return {
    id: newRolloutId(),
    model: 'mlp',
    version: '2',
    from: { routing: { '1': 100 }, routing_source: 'explicit' },
    steps: [10, 100],
    step_seconds: stepSeconds,
    max_error_rate: 0.01,
    max_p50_latency_ratio: 2,
    step: 0,
    state: 'running',
    started_at: now,
    step_started_at: now,
    ended_at: null,
    reason: null,
  };
}

describe('lifecycle: rollout steps and the events log, on ModelControl', function () {
  let prefix: string;
  let redis: Redis;
  let control: ModelControl;
  beforeEach(() => {
    prefix = uniquePrefix('lifecycle');
    redis = new Redis(TEST_REDIS_URL);
    control = new ModelControl(redis, prefix);
  });
  afterEach(async () => {
    redis.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it('a hand routing change is refused in the same step as its write while a rollout runs, so it never overwrites one started a moment before', async () => {
    const r = runningRollout(60);
    expect(await control.setRouting('mlp', { '1': 100 }, 'ops')).to.equal(true);
    // The admin's route read "no rollout running" just before this one started: its write comes after.
    // Started from a routing read before that change: refused, nothing written (the route reads again).
    expect(await control.startRollout(r, stepRouting(r, 10), 'ops', null)).to.equal('routing_changed');
    expect(await control.startRollout(r, stepRouting(r, 10), 'ops', { '1': 50, '2': 50 })).to.equal('routing_changed');
    expect(await control.activeRollout('mlp')).to.equal(null);
    expect(await control.startRollout(r, stepRouting(r, 10), 'ops', { '1': 100 })).to.equal('started');
    expect(await control.startRollout({ ...r, id: 'ro_other' }, stepRouting(r, 10), 'ops', await control.routing('mlp'))).to.equal('running');
    const events = (await control.events('mlp', 100))!.data.length;
    expect(await control.setRouting('mlp', { '1': 50, '2': 50 }, 'other-admin')).to.equal(false);
    expect(await control.routing('mlp')).to.deep.equal({ '1': 90, '2': 10 });
    expect((await control.events('mlp', 100))!.data).to.have.length(events);
    // Once it has ended, the routing is the admins' again (null: the default routing).
    const canceled: StoredRollout = { ...r, state: 'canceled', ended_at: Date.now(), reason: 'canceled by ops' };
    expect(await control.moveRollout(r, canceled, r.from.routing, 'ops', 'rollout_canceled', { rollout: r.id })).to.equal(true);
    expect(await control.setRouting('mlp', null, 'ops')).to.equal(true);
    expect(await control.routing('mlp')).to.equal(null);
  });

  it("a step whose time is up is held while the candidate has no ended job, and judged on the first one; the replaced versions' lack of jobs does not stop it", async () => {
    const now = Date.now();
    const r = runningRollout(1, now);
    expect(await control.startRollout(r, stepRouting(r, 10), 'ops', null)).to.equal('started');
    expect(await control.routing('mlp')).to.deep.equal({ '1': 90, '2': 10 });
    // An hour later, with no traffic: held at step 0.
    await advanceRollouts(control, ['mlp'], now + 3600_000);
    expect((await control.rollout('mlp', r.id))!).to.include({ state: 'running', step: 0 });
    // The replaced version served, the candidate did not: still held.
    await control.recordFigures('mlp', { id: r.id, step: 0 }, '1', 50, 0, Array(50).fill(4));
    await advanceRollouts(control, ['mlp'], now + 3600_000);
    expect((await control.rollout('mlp', r.id))!).to.include({ state: 'running', step: 0 });
    // One job of the candidate ended: the step is judged and passes on.
    await control.recordFigures('mlp', { id: r.id, step: 0 }, '2', 1, 0, [4]);
    await advanceRollouts(control, ['mlp'], now + 3600_000);
    expect((await control.rollout('mlp', r.id))!).to.include({ state: 'running', step: 1 });
    expect(await control.routing('mlp')).to.deep.equal({ '2': 100 });
    const step = (await control.events('mlp', 5))!.data[0]!;
    expect(step).to.deep.include({ type: 'rollout_step', actor: `rollout:${r.id}` });
    expect(step.data.figures).to.deep.equal({ candidate: { succeeded: 1, failed: 0, p50_ms: 5 }, replaced: { succeeded: 50, failed: 0, p50_ms: 5 } });
    // Two processes judging the same step: one moves it (compare-and-set), the other changes nothing.
    await control.recordFigures('mlp', { id: r.id, step: 1 }, '2', 3, 0, [4, 4, 4]);
    await Promise.all([advanceRollouts(control, ['mlp'], now + 7200_000), advanceRollouts(new ModelControl(redis, prefix), ['mlp'], now + 7200_000)]);
    expect((await control.rollout('mlp', r.id))!).to.include({ state: 'completed', step: 1 });
    const types = (await control.events('mlp', 10))!.data.map((e) => e.type);
    expect(types.filter((t) => t === 'rollout_completed')).to.have.length(1);
  });

  it('a candidate whose median latency is past the last finite bucket (over 60 s, against 4 ms for the replaced version) is rolled back, not promoted', async () => {
    const now = Date.now();
    const r = runningRollout(1, now);
    expect(await control.startRollout(r, stepRouting(r, 10), 'ops', null)).to.equal('started');
    // Step 0: the replaced version answers in 4 ms; every job of the candidate took 90 s, submit to end.
    await control.recordFigures('mlp', { id: r.id, step: 0 }, '1', 90, 0, Array(90).fill(4));
    await control.recordFigures('mlp', { id: r.id, step: 0 }, '2', 10, 0, Array(10).fill(90_000));
    await advanceRollouts(control, ['mlp'], now + 2000);
    const after = (await control.rollout('mlp', r.id))!;
    expect({ state: after.state, step: after.step, routing: await control.routing('mlp') }, `reason: ${after.reason}`).to.deep.equal({
      state: 'rolled_back',
      step: 0,
      routing: { '1': 100 },
    });
    expect(after.reason).to.match(/p50 latency ratio over .* \(over 60000 ms against 5 ms\)/);
    const event = (await control.events('mlp', 100))!.data.find((e) => e.type === 'rollout_rolled_back');
    expect((event!.data as { figures: unknown }).figures).to.deep.equal({
      candidate: { succeeded: 10, failed: 0, p50_ms: null, p50_over_ms: 60_000 },
      replaced: { succeeded: 90, failed: 0, p50_ms: 5 },
    });
  });

  it('two medians past the last bucket say nothing of a ratio: the step goes on', async () => {
    const now = Date.now();
    const r = runningRollout(1, now);
    expect(await control.startRollout(r, stepRouting(r, 10), 'ops', null)).to.equal('started');
    await control.recordFigures('mlp', { id: r.id, step: 0 }, '1', 90, 0, Array(90).fill(90_000));
    await control.recordFigures('mlp', { id: r.id, step: 0 }, '2', 10, 0, Array(10).fill(90_000));
    await advanceRollouts(control, ['mlp'], now + 2000);
    const after = (await control.rollout('mlp', r.id))!;
    expect({ state: after.state, step: after.step }, `reason: ${after.reason}`).to.deep.equal({ state: 'running', step: 1 });
  });

  it("every event's time is Redis's as it is written: a process whose clock is a minute ahead cannot list an event above a newer one", async () => {
    const redisMs = async () => {
      const [s, us] = await redis.time();
      return Number(s) * 1000 + Math.floor(Number(us) / 1000);
    };
    const before = await redisMs();
    // One writer on a machine whose clock is 60 s fast (only its clock: what it writes is the same).
    const RealDate = Date;
    class FastDate extends RealDate {
      constructor(...args: ConstructorParameters<typeof Date> | []) {
        if (args.length === 0) super(RealDate.now() + 60_000);
        else super(...(args as ConstructorParameters<typeof Date>));
      }
      static override now(): number {
        return RealDate.now() + 60_000;
      }
    }
    globalThis.Date = FastDate as DateConstructor;
    try {
      await control.setRouting('mlp', { '1': 100 }, 'fast-clock');
      await control.record('mlp', 'fast-clock', 'version_loaded', { version: '2', state: 'loading' });
    } finally {
      globalThis.Date = RealDate;
    }
    // Then another process, with a true clock, writes after it.
    await new ModelControl(redis, prefix).record('mlp', 'true-clock', 'version_loaded', { version: '2', state: 'ready' });
    const after = await redisMs();
    const events = (await control.events('mlp', 10))!.data;
    expect(events.map((e) => e.actor)).to.deep.equal(['true-clock', 'fast-clock', 'fast-clock']);
    const times = events.map((e) => Date.parse(e.at));
    for (const [i, e] of events.entries()) {
      expect(e.at, e.actor).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(times[i], `${e.type} by ${e.actor} at ${e.at}`).to.be.within(before, after);
    }
    // Newest first: the times read down the list never go up.
    expect([...times].sort((a, b) => b - a)).to.deep.equal(times);
  });

  it("the script's date writing agrees with Date.prototype.toISOString: leap days, year ends, random instants", async () => {
    const instants = [0, 951_782_400_000, 951_868_799_999, 1_709_164_800_000, 946_684_799_999, 4_102_444_799_999, 4_107_542_399_999, 1_798_761_599_123];
    for (let i = 0; i < 500; i++) instants.push(Math.floor(Math.random() * 8_000_000_000_000));
    const lua = `${ISO8601_LUA}\nlocal out = {}\nfor i, v in ipairs(ARGV) do out[i] = iso8601(tonumber(v)) end\nreturn out`;
    const written = (await redis.eval(lua, 0, ...instants.map(String))) as string[];
    expect(written).to.deep.equal(instants.map((ms) => new Date(ms).toISOString()));
  });

  it('paging with `after` while events are written meanwhile: every event that existed at the first page is read once, in order, none of the new ones', async () => {
    for (let i = 0; i < 45; i++) await control.record('mlp', 'ops', 'routing_changed', { weights: { '1': 100 }, n: i });
    const first = (await control.events('mlp', 10))!;
    const seen = [...first.data];
    let more = first.hasMore;
    let written = 0;
    while (more) {
      // Other admins and processes keep writing between pages.
      for (let k = 0; k < 7; k++) await control.record('mlp', 'worker:x', 'version_loaded', { version: '9', state: 'ready', w: written++ });
      const page = (await control.events('mlp', 10, seen.at(-1)!.id))!;
      seen.push(...page.data);
      more = page.hasMore;
    }
    expect(seen.map((e) => e.data.n)).to.deep.equal(Array.from({ length: 45 }, (_, i) => 44 - i));
    expect(new Set(seen.map((e) => e.id)).size).to.equal(45);
  });
});

interface Fake {
  url: string;
  requests: Array<{ line: string; body: string }>;
  close(): Promise<void>;
}

async function fakeGateway(handler: (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void): Promise<Fake> {
  const requests: Fake['requests'] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (s: string) => (body += s));
    req.on('end', () => {
      requests.push({ line: `${req.method} ${req.url}`, body });
      handler(req, res, body);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const batchOf = (status: string) => ({
  id: '3b1d0000-0000-4000-8000-000000000001',
  object: 'batch',
  model: 'mlp',
  version: '2',
  status,
  request_counts: { total: 2, succeeded: 0, failed: 0, canceled: 0 },
  created_at: new Date().toISOString(),
  completed_at: null,
  metadata: null,
  webhook: null,
});

describe('lifecycle: the CLI at its edges', function () {
  this.timeout(60_000);
  let fake: Fake | undefined;
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'infer-cli-edges-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    await fake?.close();
    fake = undefined;
  });

  it('a gateway that refuses connections, and one that answers 502 with a proxy\'s HTML: exit 1, one error line each', async () => {
    fake = await fakeGateway((_req, res) => res.writeHead(502, { 'content-type': 'text/html' }).end('<html>Bad Gateway</html>'));
    const html = await runCliProcess(fake.url, ['models', 'get', 'mlp']);
    expect(html.code).to.equal(1);
    expect(html.stderr).to.match(/^error: .*\(code: http_error, HTTP 502\)$/m);
    expect(html.stdout).to.equal('');
    const url = fake.url;
    await fake.close();
    fake = undefined;
    const refused = await runCliProcess(url, ['models', 'events', 'mlp', '--json'], { INFER_ADMIN_KEY: 'a' });
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.match(new RegExp(`^error: cannot reach ${url.replace(/[.]/g, '\\.')} \\(ECONNREFUSED\\)$`, 'm'));
    expect(refused.stdout).to.equal('');
  });

  it('jobs submit --input-file - reads the input from stdin', async () => {
    fake = await fakeGateway((_req, res, body) => {
      const parsed = JSON.parse(body) as { model: string; input: unknown };
      res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'j1', object: 'job', model: parsed.model, status: 'queued', input_echo: parsed.input }));
    });
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'apps', 'cli', 'src', 'main.ts'), 'jobs', 'submit', '-m', 'mlp', '--input-file', '-'], {
      cwd: REPO_ROOT,
      env: { ...process.env, INFER_URL: fake.url, INFER_API_KEY: 'k' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stdin.end(JSON.stringify({ features: [0.5, 0.25] }));
    const [code] = (await once(child, 'close')) as [number];
    expect(code).to.equal(0);
    expect(JSON.parse(stdout)).to.deep.include({ id: 'j1', input_echo: { features: [0.5, 0.25] } });
    expect(JSON.parse(fake.requests[0]!.body)).to.deep.equal({ model: 'mlp', input: { features: [0.5, 0.25] } });
  });

  it('Ctrl-C while batch submit --wait waits: the CLI stops, the batch is not canceled, no results file is written', async () => {
    let polls = 0;
    fake = await fakeGateway((req, res) => {
      if (req.method === 'POST' && req.url?.startsWith('/v1/batches?')) return void res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify(batchOf('queued')));
      if (req.method === 'GET' && req.url?.startsWith('/v1/batches/')) {
        polls++;
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(batchOf('running')));
      }
      res.writeHead(404, { 'content-type': 'application/problem+json' }).end(JSON.stringify({ type: 'about:blank', title: 'Not Found', status: 404, detail: 'no', code: 'not_found' }));
    });
    const file = path.join(dir, 'rows.ndjson');
    writeFileSync(file, `${JSON.stringify({ input: { features: [1] } })}\n${JSON.stringify({ input: { features: [2] } })}\n`);
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'apps', 'cli', 'src', 'main.ts'), 'batch', 'submit', file, '-m', 'mlp', '--wait', '--poll-ms', '50'], {
      cwd: REPO_ROOT,
      env: { ...process.env, INFER_URL: fake.url, INFER_API_KEY: 'k' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const closed = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
    try {
      await waitUntil(() => polls >= 3, 20_000, 'the CLI to be waiting');
      child.kill('SIGINT');
      const [code, signal] = await closed;
      expect(code === 130 || signal === 'SIGINT', `exit ${code} ${signal}`).to.equal(true);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    expect(stderr).to.contain('waiting for it to end');
    expect(fake.requests.map((r) => r.line).filter((l) => l.includes('/cancel'))).to.deep.equal([]);
    expect(existsSync(`${file}.results.ndjson`)).to.equal(false);
  });
});
