import { expect } from 'chai';
import http from 'node:http';
import { Redis } from 'ioredis';
import { ConfigError, loadConfig } from '@infer/config';
import { bulkQueue, type Batch } from '@infer/contract';
import { ShutdownSignals } from '@infer/lifecycle';
import { b64Fp32, directOrt, getBatch, maxAbsDiff, mlpFeatures, readResults, submitBatch, toNdjson, waitForBatchEnd } from './helpers/batches.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { TEST_KEY, TEST_REDIS_URL, deletePrefix, startPlatform, uniquePrefix, type TestPlatform } from './helpers/platform.js';
import { freePort, pings } from './helpers/redis-server.js';
import { Spawned } from './helpers/spawned.js';
import { deepMlpModel } from './helpers/slow-models.js';
import { elapse, waitUntil } from './helpers/wait.js';

describe('shutdown: ShutdownSignals (the rule, on an injected clock)', () => {
  const at = (times: number[], graceMs = 2000) => {
    let now = 0;
    const signals = new ShutdownSignals(graceMs, () => now);
    return times.map((t) => {
      now = t;
      return signals.receive();
    });
  };

  it('the first signal starts the shutdown; repeats within the grace are ignored', () => {
    expect(at([1000, 1000, 1005, 2999])).to.deep.equal([
      { action: 'shutdown', sinceFirstMs: 0 },
      { action: 'ignore', sinceFirstMs: 0 },
      { action: 'ignore', sinceFirstMs: 5 },
      { action: 'ignore', sinceFirstMs: 1999 },
    ]);
  });

  it('a signal the grace period or more after the first forces the exit', () => {
    expect(at([0, 2000]).map((d) => d.action)).to.deep.equal(['shutdown', 'force']);
    expect(at([0, 60_000]).map((d) => d.action)).to.deep.equal(['shutdown', 'force']);
  });

  it('measures the grace from the first signal, not the latest: steady duplicates still end in a force', () => {
    expect(at([0, 1500, 1999, 2500]).map((d) => d.action)).to.deep.equal(['shutdown', 'ignore', 'ignore', 'force']);
  });

  it('judges a repeat by the earliest it may have arrived: one handled after a blocked event loop counts from the last free turn', () => {
    let now = 0;
    const signals = new ShutdownSignals(2000, () => now);
    expect(signals.receive().action).to.equal('shutdown');
    // The relay came 5 ms later, during a 4 s model run that began 100 ms after the first signal.
    now = 4100;
    expect(signals.receive(100)).to.deep.equal({ action: 'ignore', sinceFirstMs: 100 });
    // Asked again once the run is over, with the loop free: a deliberate repeat forces.
    now = 4200;
    expect(signals.receive(4200).action).to.equal('force');
  });

  it('with a grace of 0 every repeated signal forces', () => {
    expect(at([0, 0], 0).map((d) => d.action)).to.deep.equal(['shutdown', 'force']);
  });

  it('SHUTDOWN_FORCE_GRACE_MS: 2000 by default, a non-negative integer of milliseconds', () => {
    expect(loadConfig({}).shutdownForceGraceMs).to.equal(2000);
    expect(loadConfig({ SHUTDOWN_FORCE_GRACE_MS: '250' }).shutdownForceGraceMs).to.equal(250);
    expect(loadConfig({ SHUTDOWN_FORCE_GRACE_MS: '0' }).shutdownForceGraceMs).to.equal(0);
    for (const bad of ['-1', '1.5', 'soon']) {
      expect(() => loadConfig({ SHUTDOWN_FORCE_GRACE_MS: bad }), bad).to.throw(ConfigError, /SHUTDOWN_FORCE_GRACE_MS/);
    }
  });
});


/** A chunk is 2048 rows (8 runs of 256): three chunks a round, so one is running when the signal comes. */
const ROWS = 3 * 2048;
const ROUNDS = 5;
/** The worker's shutdownDeadlineMs (apps/worker/src/main.ts). */
const WORKER_DEADLINE_MS = 30_000;

function rowsOf(round: number): string {
  return toNdjson(Array.from({ length: ROWS }, (_, i) => ({ custom_id: `r${round}-${i}`, input: { features: b64Fp32(mlpFeatures(i)) } })));
}

describe('shutdown: `npm run start:worker` signalled through its process group', function () {
  this.timeout(180_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let redis: Redis;
  const batches: Batch[] = [];
  let spawned: Spawned | undefined;

  before(async () => {
    // Runs of ~100 ms, as a real model's: what made a wrapper that times a child's answer to a signal kill it
    // (the tsx CLI, which `npm run start:worker` used to run, SIGKILLs a child that has not acknowledged a
    // relayed signal within 60 ms, and a child in the middle of a run acknowledges nothing until it ends).
    repo = tempModelRepo({ slow: { onnx: deepMlpModel(), config: { max_batch_size: 256, max_delay_ms: 2 } } });
    // The gateway in this process, on the prefix the spawned workers use.
    p = await startPlatform({ models: repo.root, worker: false });
    redis = new Redis(p.config.redisUrl);
  });
  afterEach(() => spawned?.kill());
  after(async () => {
    redis?.disconnect();
    await p?.close();
    repo?.remove();
  });

  /** Chunks locked by a worker (running, or fetched to run next). */
  const activeChunks = async (): Promise<number> => {
    const q = bulkQueue(p.prefix, 'slow', '1');
    return redis.llen(`${q.prefix}:${q.name}:active`);
  };

  for (let round = 1; round <= ROUNDS; round++) {
    it(`round ${round}/${ROUNDS}: SIGTERMs to the group mid-chunk are one request: exits 0 in time, no chunk left locked`, async () => {
      const worker = new Spawned('start:worker', { REDIS_URL: p.config.redisUrl, QUEUE_PREFIX: p.prefix, MODEL_REPOSITORY: repo.root });
      spawned = worker;
      await worker.waitForLog('worker started', 30_000);
      const batch = await submitBatch(p, { ndjson: rowsOf(round), query: 'model=slow' });
      batches.push(batch);
      // Busy: a chunk of this batch done, and another locked (running).
      await waitUntil(
        async () => {
          const done = (await getBatch(p, batch.id)).request_counts.succeeded;
          return done > 0 && done < ROWS && (await activeChunks()) > 0;
        },
        30_000,
        'the worker to be in the middle of the batch',
      );

      const t0 = performance.now();
      // Back to back, as `kill -TERM -<pgid>` twice would: the kernel often merges the two into one delivery...
      worker.signalGroup('SIGTERM');
      worker.signalGroup('SIGTERM');
      await worker.waitForLog('shutting down', 5_000);
      // ...so one more once the shutdown has begun, which surely arrives on its own, mid-shutdown.
      worker.signalGroup('SIGTERM');
      const exit = await worker.exit(WORKER_DEADLINE_MS + 5_000);

      expect({ code: exit.code, signal: exit.signal }, worker.tail()).to.deep.equal({ code: 0, signal: null });
      expect(exit.at - t0, 'ms from the first signal to the exit').to.be.below(WORKER_DEADLINE_MS);
      expect(worker.logged('shutting down'), 'shutdowns begun').to.have.length(1);
      expect(worker.logged('already shutting down').length, 'repeated signals logged as ignored').to.be.at.least(1);
      expect(worker.logged('already shutting down').every((l) => l.signal === 'SIGTERM')).to.equal(true);
      expect(worker.logged('signalled again after the grace period'), 'forced exits').to.have.length(0);
      // The chunk it was running was finished and the one it had fetched handed back: none stays locked until its lock lapses.
      expect(await activeChunks(), 'chunks still locked by the stopped worker').to.equal(0);
    });
  }

  it(`then every batch completes with each of its rows exactly once, right`, async () => {
    expect(batches).to.have.length(ROUNDS);
    await p.startWorker();
    const model = p.gateway.models.resolve('slow');
    const sample = [0, 1, 2047, 2048, 4095, 4096, ROWS - 1];
    const direct = await directOrt(model, sample.map((i) => mlpFeatures(i)));
    for (const [r, batch] of batches.entries()) {
      const ended = await waitForBatchEnd(p, batch.id, 60_000);
      expect(ended.status).to.equal('completed');
      expect(ended.request_counts).to.deep.equal({ total: ROWS, succeeded: ROWS, failed: 0, canceled: 0 });
      const lines = await readResults(p, batch.id);
      expect(lines, 'result lines').to.have.length(ROWS);
      lines.forEach((l, i) => {
        if (l.index !== i || l.custom_id !== `r${r + 1}-${i}` || l.status !== 'succeeded') {
          expect.fail(`line ${i} of round ${r + 1}: ${JSON.stringify({ index: l.index, custom_id: l.custom_id, status: l.status })}`);
        }
      });
      sample.forEach((i, k) => {
        expect(maxAbsDiff((lines[i]!.output as { probabilities: number[] }).probabilities, direct[k]!), `row ${i}`).to.be.at.most(1e-5);
      });
    }
  });
});

/** POST /v1/jobs with `Expect: 100-continue`, holding back the end of its body: a request the gateway is in the middle of. */
async function heldRequest(port: number): Promise<{ finish(): void; response: Promise<number>; aborted: Promise<void> }> {
  const body = JSON.stringify({ model: 'slow', input: { features: new Array(64).fill(0.5) } });
  const req = http.request({
    // A connection of its own, closed after the answer: a kept-alive idle one would hold the gateway's close open.
    agent: false,
    host: '127.0.0.1',
    port,
    method: 'POST',
    path: '/v1/jobs',
    headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), expect: '100-continue' },
  });
  const response = new Promise<number>((resolve, reject) => {
    req.once('response', (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode!));
    });
    req.once('error', reject);
  });
  const aborted = response.then(
    () => undefined,
    () => undefined,
  );
  // The gateway answers 100 Continue once the request has reached its handlers.
  await new Promise<void>((resolve, reject) => {
    req.once('continue', resolve);
    response.catch(reject);
  });
  req.write(body.slice(0, 10));
  return { finish: () => req.end(body.slice(10)), response, aborted };
}

describe('shutdown: `npm run start:gateway` signalled through its process group', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let prefix: string;
  let spawned: Spawned | undefined;

  before(() => {
    repo = tempModelRepo({ slow: { onnx: deepMlpModel(), config: { max_batch_size: 256, max_delay_ms: 2 } } });
    prefix = uniquePrefix('shutdown');
  });
  afterEach(() => spawned?.kill());
  after(async () => {
    await deletePrefix(TEST_REDIS_URL, prefix);
    repo?.remove();
  });

  const startGateway = async (env: Record<string, string> = {}) => {
    const port = await freePort();
    const gateway = new Spawned('start:gateway', {
      REDIS_URL: TEST_REDIS_URL,
      QUEUE_PREFIX: prefix,
      MODEL_REPOSITORY: repo.root,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      PORT: String(port),
      HOST: '127.0.0.1',
      ...env,
    });
    spawned = gateway;
    await gateway.waitForLog('gateway listening', 30_000);
    return { gateway, port };
  };

  it('repeated SIGTERMs while a request is in flight are one request: it is answered, then exit 0', async () => {
    const { gateway, port } = await startGateway();
    const held = await heldRequest(port);
    gateway.signalGroup('SIGTERM');
    gateway.signalGroup('SIGTERM');
    await gateway.waitForLog('shutting down', 5_000);
    gateway.signalGroup('SIGTERM');
    await gateway.waitForLog('already shutting down', 5_000);
    // Still open: the shutdown waits for the request in hand.
    expect(gateway.child.exitCode).to.equal(null);
    held.finish();
    // Answered as any submit is: no worker serves this prefix (jobs are queued for the fleet), no Prefer: wait.
    expect(await held.response, 'the request in flight was answered: accepted and queued').to.equal(202);
    const exit = await gateway.exit(10_000);
    expect({ code: exit.code, signal: exit.signal }, gateway.tail()).to.deep.equal({ code: 0, signal: null });
    expect(gateway.logged('shutting down')).to.have.length(1);
    expect(gateway.logged('signalled again after the grace period')).to.have.length(0);
  });

  it('a second signal after the grace period forces the exit at once: code 1, said in the log', async () => {
    const graceMs = 300;
    const { gateway, port } = await startGateway({ SHUTDOWN_FORCE_GRACE_MS: String(graceMs) });
    const held = await heldRequest(port);
    gateway.signalGroup('SIGINT');
    await gateway.waitForLog('shutting down', 5_000);
    // The rule is about time: wait out the grace (the gateway counts from before it logged), the shutdown still held open by the request.
    await elapse(graceMs + 50, 'the force grace period running out');
    expect(gateway.child.exitCode, 'still shutting down').to.equal(null);
    const t1 = performance.now();
    gateway.signalGroup('SIGINT');
    const exit = await gateway.exit(5_000);
    expect({ code: exit.code, signal: exit.signal }, gateway.tail()).to.deep.equal({ code: 1, signal: null });
    expect(exit.at - t1, 'ms from the second signal to the exit').to.be.below(2_000);
    const forced = gateway.logged('signalled again after the grace period');
    expect(forced, gateway.tail()).to.have.length(1);
    expect(forced[0]!.signal).to.equal('SIGINT');
    expect(forced[0]!.sinceFirstMs).to.be.at.least(graceMs);
    await held.aborted;
  });
});

describe('shutdown: `npm start` (scripts/start.ts) stopped with Ctrl-C', function () {
  this.timeout(60_000);
  let repo: TempModelRepo;
  let spawned: Spawned | undefined;

  before(() => {
    repo = tempModelRepo({ slow: { onnx: deepMlpModel(), config: { max_batch_size: 256, max_delay_ms: 2 } } });
  });
  after(() => {
    spawned?.kill();
    repo?.remove();
  });

  it('SIGINT to the group (and the SIGTERM start.ts passes on) stop both apps gracefully, Redis last; exit 0, nothing left running', async () => {
    // No Redis at this address: start.ts starts a throwaway redis-server, which must outlive the apps' shutdown.
    const redisUrl = `redis://127.0.0.1:${await freePort()}`;
    const port = await freePort();
    const start = new Spawned('start', {
      REDIS_URL: redisUrl,
      MODEL_REPOSITORY: repo.root,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      PORT: String(port),
      HOST: '127.0.0.1',
    });
    spawned = start;
    await start.waitForLog('gateway listening', 30_000, { name: 'gateway' });
    await start.waitForLog('worker started', 30_000, { name: 'worker' });
    // The gateway's shutdown waits for this request, so start.ts's SIGTERM surely finds it shutting down.
    const held = await heldRequest(port);

    // A terminal's Ctrl-C: SIGINT to every process of the foreground group.
    const t0 = performance.now();
    start.signalGroup('SIGINT');
    await start.waitForLog('already shutting down', 5_000, { name: 'gateway' });
    held.finish();
    // Accepted and queued (no Prefer: wait): the worker leaves the fleet as it stops and closes no queue, and Redis outlives the gateway.
    expect(await held.response, 'the request in flight was answered: accepted and queued').to.equal(202);
    const exit = await start.exit(WORKER_DEADLINE_MS + 5_000);

    expect({ code: exit.code, signal: exit.signal }, start.tail()).to.deep.equal({ code: 0, signal: null });
    // Well within the worker's deadline: Redis was still there for the apps' last commands.
    expect(exit.at - t0, 'ms from Ctrl-C to the exit').to.be.below(10_000);
    for (const app of ['gateway', 'worker']) {
      expect(start.logged('shutting down', app), `${app} shutdowns begun`).to.have.length(1);
      expect(start.logged('signalled again after the grace period', app), `${app} forced exits`).to.have.length(0);
      expect(start.logged('shutdown took longer', app), `${app} deadlines passed`).to.have.length(0);
    }
    // The gateway got both the group's SIGINT and start.ts's SIGTERM, in either order (two signals pending at once
    // are handled in no set order): the first began the shutdown, the other was the same request.
    const signals = [start.logged('shutting down', 'gateway')[0]!.signal, start.logged('already shutting down', 'gateway')[0]!.signal];
    expect(signals.sort()).to.deep.equal(['SIGINT', 'SIGTERM']);
    await waitUntil(() => !start.groupAlive(), 5_000, 'every process of the group to be gone');
    await waitUntil(async () => !(await pings(redisUrl)), 5_000, 'the throwaway redis-server to be gone');
  });
});
