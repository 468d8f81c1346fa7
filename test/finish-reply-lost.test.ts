/**
 * A worker's `job ended` line is written once FINISH has answered: the job's
 * status, or `discarded` for a run whose end was not kept (README, Logs).
 * FINISH's reply lost with its connection: ioredis sends the script again on
 * the new connection, where it finds the records the first run wrote. That
 * run was this one: the job ended here (`succeeded`), not elsewhere.
 */
import { Writable } from 'node:stream';
import { expect } from 'chai';
import type { Job } from '@infer/contract';
import { createLogger } from '@infer/logger';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { mlpFeatures } from './helpers/batches.js';
import { postJob } from './helpers/jobs.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { RedisProxy } from './helpers/tcp-proxy.js';
import { waitUntil } from './helpers/wait.js';

describe("FINISH's reply lost with its connection", function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let proxy: RedisProxy;
  let worker: InferenceWorker | undefined;
  const lines: Array<Record<string, unknown>> = [];

  before(async () => {
    p = await startPlatform({ worker: false });
    proxy = new RedisProxy(p.config.redisUrl);
    await proxy.listen();
  });
  after(async () => {
    await worker?.close();
    await proxy?.close();
    await p?.close();
  });

  it("the job this run ended: its one 'job ended' line says 'succeeded', not 'discarded'", async () => {
    // Queued before any worker is live, so its id is known before a worker takes it.
    const { job } = await postJob(p, { model: 'mlp', version: '2', input: { features: mlpFeatures(7) } });
    // The worker's commands go through the proxy: the first one naming this job is its FINISH.
    const finishSent = proxy.swallowAfter(job.id);
    const destination = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    });
    // Not awaited yet: the worker's start may itself wait on a reply of the connection whose replies are swallowed.
    const starting = createWorker({ ...p.config, redisUrl: proxy.url }, createLogger({ level: 'info', name: 'worker', destination }));
    starting.then((w) => (worker = w)).catch(() => undefined);
    const conn = await finishSent;
    // FINISH ran in Redis (the job's record is there: this run ended it), its reply never came: the connection drops.
    const ended = await waitUntil(
      async () => {
        const j = (await (await p.api(`/v1/jobs/${job.id}`)).json()) as Job;
        return j.status === 'succeeded' || j.status === 'failed' || j.status === 'canceled' ? j : null;
      },
      10_000,
      'the job to end',
    );
    expect(ended.status).to.equal('succeeded');
    conn.client.destroy();
    worker = await starting;
    const mine = () => lines.filter((l) => l.msg === 'job ended' && l.jobId === job.id);
    await waitUntil(() => mine().length > 0, 15_000, "the job's 'job ended' line");
    expect(mine().map((l) => l.status), `the 'job ended' lines of job ${job.id}, whose record (written by this run) says succeeded`).to.deep.equal(['succeeded']);
  });
});
