import { createHash } from 'node:crypto';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, type EnvelopeData, type Job } from '@infer/contract';
import { EnvelopeQueue, encodeRecord, idempotencyDigest } from '@infer/job-store';
import { MARK_RUNNING } from '../packages/job-store/src/scripts.js';
import { mlpFeatures, submitBatch, waitForBatchEnd } from './helpers/batches.js';
import { pollJob } from './helpers/jobs.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * What the crash containment and the Idempotency-Keys' lifetimes must
 * hold besides their main paths: a first take costs no row note, a note is
 * written only under the take that holds its envelope, and a job ended by
 * a deadline sweep has its key expire with its record.
 */
describe('crash notes and Idempotency-Key lifetimes', function () {
  this.timeout(60_000);
  const TTL_S = 3;
  let p: TestPlatform;
  let redis: Redis;

  before(async () => {
    p = await startPlatform({ env: { RESULT_TTL_SECONDS: String(TTL_S) } });
    redis = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    redis?.disconnect();
    await p?.close();
  });

  it('the first take of an envelope and of a chunk costs no row note: no MARK_RUNNING, no `run` field (a chunk only marks that its run began)', async () => {
    const markSha = createHash('sha1').update(MARK_RUNNING).digest('hex');
    const base = new Redis(TEST_REDIS_URL);
    const monitor = await base.monitor();
    const seen: string[][] = [];
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args.some((a) => typeof a === 'string' && a.includes(p.prefix))) seen.push(args);
    });
    try {
      // A job run through its first take, and a batch's chunk.
      const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(1) } }), headers: { prefer: 'wait=20' } });
      expect(res.status).to.equal(200);
      expect(((await res.json()) as Job).status).to.equal('succeeded');
      const batch = await submitBatch(p, { json: { model: 'mlp', items: [0, 1, 2].map((i) => ({ input: { features: mlpFeatures(i) } })) } });
      expect((await waitForBatchEnd(p, batch.id)).status).to.equal('completed');
      await waitUntil(() => seen.length > 0, 5000, 'the monitor to see commands');
    } finally {
      monitor.disconnect();
      base.disconnect();
    }
    const lower = (a: string[]) => a.map((s) => s.toLowerCase());
    // MARK_RUN_BEGAN (one a chunk; the script that notes `rb`) mentions `run` only to clear a note left
    // from an earlier attempt.
    const runBegan = (a: string[]) => lower(a)[0] === 'eval' && a[1]?.includes("'rb'") === true;
    const noting = seen.filter((a) => lower(a).includes(markSha) || (lower(a)[0] === 'eval' && !runBegan(a) && a[1]?.includes("'run'")));
    expect(noting, 'MARK_RUNNING calls').to.have.length(0);
    expect(seen.filter(runBegan), "MARK_RUN_BEGAN calls: the chunk's one").to.have.length(1);
  });

  it('MARK_RUNNING writes only under the take that holds the envelope, and leaves nothing on one that ended', async () => {
    await p.closeWorker();
    try {
      const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(3) } }) });
      expect(res.status).to.equal(202);
      const { id } = (await res.json()) as Job;
      const q = new EnvelopeQueue(redis, { prefix: p.prefix, model: 'mlp', version: '2', resultTtlMs: TTL_S * 1000 });
      const k = interactiveKeys(p.prefix, 'mlp', '2');
      const taken = await q.fetch('tok-a', 60_000, 64, 64);
      expect(taken).to.not.equal('paused');
      const envelope = (taken as Exclude<typeof taken, 'paused'>).envelopes[0]!;
      const jk = `${k.base}${envelope.id}`;
      expect(await q.markRunning(envelope.id, 'tok-b', id, envelope.take), 'another take').to.equal(false);
      expect(await redis.hget(jk, 'run')).to.equal(null);
      expect(await q.markRunning(envelope.id, 'tok-a', id, envelope.take)).to.equal(true);
      expect(await redis.hmget(jk, 'run', 'rt')).to.deep.equal([id, '1']);
      // Cleared after the run: a stall between jobs run alone is not the envelope's own.
      expect(await q.markRunning(envelope.id, 'tok-a', null, envelope.take)).to.equal(true);
      expect(await redis.hmget(jk, 'run', 'rt')).to.deep.equal([null, null]);
      // Ended: the envelope goes, and a late note does not bring its hash back.
      const data = JSON.parse(envelope.fields.get('data')!.toString()) as EnvelopeData;
      const job = data.jobs[0]!;
      const record = encodeRecord('mlp', '2', job, { status: 'failed', startedAt: envelope.takenAt, completedAt: Date.now(), error: { code: 'inference_failed', message: 'test' } });
      expect(await q.finish([{ id: envelope.id, gateway: data.gateway, jobs: [{ id, record, wait: false, deadline: false, completedHook: false }] }])).to.deep.equal([true]);
      expect(await q.markRunning(envelope.id, 'tok-a', id, envelope.take)).to.equal(false);
      expect(await redis.exists(jk)).to.equal(0);
    } finally {
      await p.startWorker();
    }
  });

  it("a job still queued at its Cancel-After deadline (ended by a sweep, no worker running it): its Idempotency-Key expires with the canceled record", async () => {
    await p.closeWorker();
    try {
      const key = 'deadline-key';
      const res = await p.api('/v1/jobs', {
        method: 'POST',
        body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(4) } }),
        headers: { 'idempotency-key': key, 'cancel-after': '200ms' },
      });
      expect(res.status).to.equal(202);
      const { id } = (await res.json()) as Job;
      const redisKey = `${p.prefix}:idempotency:tenant-a:${idempotencyDigest(key)}`;
      expect(await redis.pttl(redisKey)).to.be.greaterThan(3600_000);
      const ended = await pollJob(p, id, 10_000);
      expect(ended.status).to.equal('canceled');
      expect(ended.error?.code).to.equal('deadline_exceeded');
      await waitUntil(async () => (await redis.pttl(redisKey)) <= TTL_S * 1000, 5000, 'the key to be shortened');
    } finally {
      await p.startWorker();
    }
  });
});
