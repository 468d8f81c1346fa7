import http from 'node:http';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { ABANDONED_UPLOAD_MS, interactiveKeys, keys, type Batch, type Job } from '@infer/contract';
import { BatchStore } from '@infer/batch-store';
import { silentLogger } from '@infer/logger';
import { Sweeper } from '../apps/worker/src/index.js';
import { getBatch, mlpFeatures, readResults, toNdjson, uploadNdjson, waitForBatchEnd } from './helpers/batches.js';
import { pollJob } from './helpers/jobs.js';
import { SHIPPED_MODELS, TEST_KEY, TEST_REDIS_URL, startPlatform, type TestPlatform } from './helpers/platform.js';
import { freePort } from './helpers/redis-server.js';
import { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';

/**
 * README "Stopping a process": on SIGTERM "a gateway stops listening and answers the requests in flight. It
 * then exits 0, or 1 if it has not finished by its deadline (gateway 10 s)". docs/batches.md: an upload is all
 * or nothing for its client; a gateway killed mid-upload answers nothing and the sweep discards the unsealed
 * batch 15 minutes after its upload began, freeing the tenant's open-batch slot.
 *
 * A spawned gateway (its own process group) gets SIGTERM while an NDJSON upload's body is still streaming in
 * and a `Prefer: wait` submit is held (no worker runs, so its job cannot end).
 */

const line = (i: number) => JSON.stringify({ custom_id: `r${i}`, input: { features: mlpFeatures(i) } }) + '\n';
const lines = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => line(from + k)).join('');

interface Answer {
  status: number;
  body: string;
  /** performance.now() when the answer (or the error) came. */
  at: number;
}

/** A chunked NDJSON upload to `port`, sent piece by piece. */
function upload(port: number): { req: http.ClientRequest; answer: Promise<Answer> } {
  const req = http.request({
    agent: false,
    host: '127.0.0.1',
    port,
    method: 'POST',
    path: '/v1/batches?model=mlp',
    headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/x-ndjson', 'transfer-encoding': 'chunked' },
  });
  const answer = new Promise<Answer>((resolve) => {
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body, at: performance.now() }));
      res.on('error', (err) => resolve({ status: -1, body: err.message, at: performance.now() }));
    });
    req.on('error', (err) => resolve({ status: -1, body: err.message, at: performance.now() }));
  });
  return { req, answer };
}

/** POST /v1/jobs with Prefer: wait=30 to `port`. */
function waitingSubmit(port: number): Promise<Answer> {
  const body = JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(7) } });
  return new Promise<Answer>((resolve) => {
    const req = http.request(
      {
        agent: false,
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/v1/jobs',
        headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), prefer: 'wait=30' },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body: text, at: performance.now() }));
      },
    );
    req.on('error', (err) => resolve({ status: -1, body: err.message, at: performance.now() }));
    req.end(body);
  });
}

describe('lifecycle: SIGTERM to a gateway mid-upload and during a Prefer: wait hold', function () {
  this.timeout(120_000);
  let p: TestPlatform;
  let redis: Redis;
  let gateway: Spawned | undefined;
  const open: http.ClientRequest[] = [];

  beforeEach(async () => {
    // The in-process gateway reads what the spawned one left; no worker until the test starts one.
    p = await startPlatform({ worker: false, env: { TENANT_MAX_OPEN_BATCHES: '1' } });
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  });
  afterEach(async () => {
    for (const r of open.splice(0)) r.destroy();
    gateway?.kill();
    await gateway?.exited;
    gateway = undefined;
    redis?.disconnect();
    await p?.close();
  });

  async function startGateway(): Promise<number> {
    const port = await freePort();
    gateway = new Spawned('start:gateway', {
      REDIS_URL: TEST_REDIS_URL,
      QUEUE_PREFIX: p.prefix,
      MODEL_REPOSITORY: SHIPPED_MODELS,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      PORT: String(port),
      HOST: '127.0.0.1',
      TENANT_MAX_OPEN_BATCHES: '1',
    });
    await gateway.waitForLog('gateway listening', 60_000);
    return port;
  }

  /** The upload's batch id, once its first chunk is registered. */
  async function registered(): Promise<string> {
    const running = keys(p.prefix).runningBatches;
    const [id] = await waitUntil(async () => {
      const ids = await redis.zrange(running, '0', '-1');
      return ids.length > 0 && Number(await redis.hget(keys(p.prefix).batch(ids[0]!), 'chunks')) >= 1 ? ids : undefined;
    }, 30_000, 'the upload to register a chunk');
    return id!;
  }

  it('answers the held Prefer: wait at once (202, queued), then the upload once its body ends (202), exits 0; both run later', async () => {
    const port = await startGateway();
    const up = upload(port);
    open.push(up.req);
    up.req.write(lines(0, 3000));
    const id = await registered();
    // A submit held by Prefer: wait (its job queued: its waiter is registered before the enqueue).
    const mlpV = p.gateway.models.resolve('mlp');
    const held = waitingSubmit(port);
    await waitUntil(async () => (await redis.hlen(interactiveKeys(p.prefix, 'mlp', mlpV.version).index)) === 1, 20_000, 'the waiting job to be queued');

    const t0 = performance.now();
    gateway!.signalGroup('SIGTERM');
    await gateway!.waitForLog('shutting down', 5_000);
    const waitAnswer = await held;
    expect(waitAnswer.status, waitAnswer.body).to.equal(202);
    expect(waitAnswer.at - t0, 'the wait is answered at once, not held for its 30 s').to.be.below(3_000);
    const job = JSON.parse(waitAnswer.body) as Job;
    expect(job.status).to.equal('queued');
    expect(gateway!.child.exitCode, 'still answering the upload').to.equal(null);

    // The client sends the rest of its body: the upload is answered 202 and sealed.
    up.req.end(lines(3000, 5000));
    const answer = await up.answer;
    expect(answer.status, answer.body).to.equal(202);
    expect((JSON.parse(answer.body) as Batch).id).to.equal(id);
    const exit = await gateway!.exit(15_000);
    expect({ code: exit.code, signal: exit.signal }, gateway!.tail()).to.deep.equal({ code: 0, signal: null });

    // A worker comes: both run, every row once.
    await p.startWorker();
    expect((await pollJob(p, job.id, 20_000)).status).to.equal('succeeded');
    const ended = await waitForBatchEnd(p, id, 60_000);
    expect(ended.status).to.equal('completed');
    expect(ended.request_counts).to.deep.equal({ total: 5000, succeeded: 5000, failed: 0, canceled: 0 });
    const results = await readResults(p, id);
    expect(results.map((r) => r.custom_id)).to.deep.equal(Array.from({ length: 5000 }, (_, i) => `r${i}`));
  });

  it('an upload whose body stops: the gateway exits at its 10 s deadline (code 1), the client sees its connection closed, and the sweep can discard the unsealed batch, freeing the slot', async () => {
    const port = await startGateway();
    const up = upload(port);
    open.push(up.req);
    up.req.write(lines(0, 3000));
    const id = await registered();
    const t0 = performance.now();
    gateway!.signalGroup('SIGTERM');
    const exit = await gateway!.exit(20_000);
    expect(exit.at - t0).to.be.below(12_000);
    expect({ code: exit.code, signal: exit.signal }, gateway!.tail()).to.deep.equal({ code: 1, signal: null });
    const answer = await up.answer;
    expect(answer.status, 'no answer, a closed connection').to.equal(-1);

    const batch = await getBatch(p, id);
    expect(batch.status, 'unsealed, runs nothing').to.be.oneOf(['queued', 'running']);
    // The tenant's only slot is held until the sweep discards it.
    expect((await uploadNdjson(p, toNdjson([{ custom_id: 'x', input: { features: mlpFeatures(1) } }]))).status).to.equal(429);
    const store = new BatchStore(redis, { prefix: p.prefix, resultTtlMs: p.config.resultTtlMs });
    const sweeper = new Sweeper({ redis, prefix: p.prefix, batchStore: store, served: [], logger: silentLogger, now: () => Date.now() + ABANDONED_UPLOAD_MS + 1000 });
    try {
      expect((await sweeper.sweep()).abandonedUploads).to.equal(1);
    } finally {
      await sweeper.close();
    }
    expect((await p.api(`/v1/batches/${id}`)).status).to.equal(404);
    const next = await uploadNdjson(p, toNdjson([{ custom_id: 'x', input: { features: mlpFeatures(1) } }]));
    expect(next.status, await next.clone().text()).to.equal(202);
  });
});
