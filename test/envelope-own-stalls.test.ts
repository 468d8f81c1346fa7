import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, interactiveQueue, isEnded, type Job } from '@infer/contract';
import { EnvelopeQueue, type FetchOutcome, type TakenEnvelope } from '@infer/job-store';
import { getJob, pollJob, postJob } from './helpers/jobs.js';
import { startStalledCheck, type StalledCheck } from './helpers/stalled-check.js';
import { int32DivModel } from './helpers/int-graphs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { deletePrefix, uniquePrefix } from './helpers/redis-keys.js';
import type { Exit } from './helpers/spawned.js';
import { WorkerProcesses } from './helpers/worker-process.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A worker that dies or hangs in a run loses every envelope it holds: those
 * of the run, and those it took for a later one. BullMQ's stalled check
 * counts a stall against each. An envelope now notes the take in which a
 * run of it began (`rt`: by the take when its envelopes run next, else
 * just before the run), and a take after a stall counts the stall as the
 * envelope's own only when that take had begun a run of it. Only stalls
 * of its own make its jobs run one at a time, and only past
 * maxStalledCount (2) of them do its jobs end `worker_lost`: an envelope
 * held beside others' crashing runs is not failed for them.
 */
describe('interactive envelopes: the stalls an envelope owns', function () {
  this.timeout(120_000);

  describe('the take and its notes (FETCH, MARK_ENVELOPE_RUNS, MARK_RUNNING)', () => {
    const prefix = uniquePrefix('own-stalls');
    const k = interactiveKeys(prefix, 'm', '1');
    const ref = interactiveQueue(prefix, 'm', '1');
    let redis: Redis;
    let checker: StalledCheck;
    let queue: EnvelopeQueue;
    let seq = 0;

    before(async () => {
      redis = new Redis(TEST_REDIS_URL);
      queue = new EnvelopeQueue(redis, { prefix, model: 'm', version: '1', resultTtlMs: 60_000 });
      // BullMQ's stalled check, as every worker runs it (maxStalledCount 2): it puts back envelopes whose lock lapsed.
      checker = startStalledCheck(TEST_REDIS_URL, ref);
    });
    after(async () => {
      await checker.close();
      await deletePrefix(TEST_REDIS_URL, prefix);
      redis.disconnect();
    });

    /** Queue an envelope of `n` jobs as ENQUEUE leaves one (the fields FETCH reads). */
    async function enqueue(n = 1): Promise<string> {
      const id = `e${++seq}`;
      await redis.hset(k.base + id, { name: 'envelope', data: '{}', timestamp: String(Date.now()), n: String(n) });
      await redis.lpush(k.wait, id);
      return id;
    }

    function envelopesOf(outcome: FetchOutcome): TakenEnvelope[] {
      expect(outcome).to.not.equal('paused');
      return (outcome as Exclude<FetchOutcome, 'paused'>).envelopes;
    }

    /** Take `id` (alone in the queue) with `token` and a 300 ms lock, let `died` act for the worker, then wait for the stalled check to put it back. */
    async function takeAndDie(id: string, token: string, runsNext: boolean, died: (e: TakenEnvelope) => Promise<unknown> = async () => undefined): Promise<TakenEnvelope> {
      const [taken] = envelopesOf(await queue.fetch(token, 300, 64, 64, { runsNext }));
      expect(taken?.id).to.equal(id);
      await died(taken!);
      await waitUntil(async () => ((await redis.lrange(k.wait, 0, -1)).includes(id) ? true : null), 10_000, `${id} put back by the stalled check`);
      return taken!;
    }

    it('an envelope taken beside another run, its worker dying three times before running it, runs whole: no stall of its own, no defa', async () => {
      const id = await enqueue();
      for (let death = 1; death <= 3; death++) {
        const taken = await takeAndDie(id, `beside-${death}`, false);
        expect({ take: taken.take, own: taken.ownStalls, runBegan: taken.runBegan }).to.deep.equal({ take: death, own: 0, runBegan: false });
      }
      const [again] = envelopesOf(await queue.fetch('next', 60_000, 64, 64));
      expect({ take: again!.take, own: again!.ownStalls, defa: again!.fields.has('defa') }).to.deep.equal({ take: 4, own: 0, defa: false });
      // BullMQ's count is the envelope's own, so the next stall is not the one past its limit.
      expect(await redis.hmget(k.base + id, 'stc', 'ors', 'defa')).to.deep.equal(['0', '0', null]);
    });

    it('one whose run its worker noted as begun (MARK_ENVELOPE_RUNS) owns the stall; three such, and it is a deferred failure', async () => {
      const id = await enqueue();
      const first = await takeAndDie(id, 'noted-1', false, (e) => queue.markRunsBegun([{ id: e.id, token: 'noted-1', take: e.take }]));
      expect(first.runBegan).to.equal(false);
      // Taken again with a stall of its own: its jobs run alone, each run noted with MARK_RUNNING.
      const second = await takeAndDie(id, 'noted-2', true, (e) => queue.markRunning(e.id, 'noted-2', 'job-a', e.take));
      expect({ own: second.ownStalls, runBegan: second.runBegan }, 'an envelope that runs alone is not noted by its take').to.deep.equal({ own: 1, runBegan: false });
      const third = await takeAndDie(id, 'noted-3', true, (e) => queue.markRunning(e.id, 'noted-3', 'job-a', e.take));
      expect(third.ownStalls).to.equal(2);
      const [last] = envelopesOf(await queue.fetch('last', 60_000, 64, 64));
      expect({ own: last!.ownStalls, defa: last!.fields.get('defa')?.toString() }).to.deep.equal({ own: 3, defa: 'job stalled more than allowable limit' });
    });

    it('a note made by another take, or once the take lost the envelope, is not written', async () => {
      const id = await enqueue();
      const [taken] = envelopesOf(await queue.fetch('holder', 60_000, 64, 64, { runsNext: false }));
      expect(await queue.markRunsBegun([{ id, token: 'someone-else', take: taken!.take }])).to.equal(0);
      expect(await redis.hget(k.base + id, 'rt')).to.equal(null);
      expect(await queue.markRunsBegun([{ id, token: 'holder', take: taken!.take }])).to.equal(1);
      expect(await redis.hget(k.base + id, 'rt')).to.equal(String(taken!.take));
    });

    it('a take whose envelopes run next notes those its batch has room for; one that goes to a later batch is noted before its own run', async () => {
      const a = await enqueue(1);
      const b = await enqueue(2);
      const c = await enqueue(1);
      // Room for two instances: a (1) fits, b (2) does not (it waits for the next batch) and stops the take.
      const taken = envelopesOf(await queue.fetch('room', 60_000, 2, 64, { runsNext: true }));
      expect(taken.map((e) => [e.id, e.runBegan])).to.deep.equal([[a, true], [b, false]]);
      expect(await redis.hmget(k.base + a, 'rt'), 'a').to.deep.equal(['1']);
      expect(await redis.hmget(k.base + b, 'rt'), 'b').to.deep.equal([null]);
      // The first envelope of a take runs next even when it is bigger than the batch (it is split).
      const [first] = envelopesOf(await queue.fetch('big', 60_000, 1, 64, { runsNext: true }));
      expect([first!.id, first!.runBegan]).to.deep.equal([c, true]);
    });

    it('a take that brings one envelope that runs alone notes none: its jobs run before the batch', async () => {
      const fresh = await enqueue(1);
      const crashed = await enqueue(1);
      // `crashed` as a take whose run stalled leaves it: the next take counts the stall its own (it runs alone).
      const at = String(Date.now());
      await redis.hset(k.base + crashed, { processedOn: at, ft: at, ats: '1', rt: '1', stc: '1' });
      const taken = envelopesOf(await queue.fetch('with-alone', 60_000, 8, 64, { runsNext: true }));
      expect(taken.map((e) => [e.id, e.runBegan, e.ownStalls])).to.deep.equal([
        [fresh, false, 0],
        [crashed, false, 1],
      ]);
      expect(await redis.hget(k.base + fresh, 'rt'), 'noted, then not').to.equal(null);
      expect(taken[0]!.fields.has('@rt')).to.equal(false);
    });

    it('with a batch collecting (startsBatch false), a first envelope bigger than its room is not noted', async () => {
      const big = await enqueue(3);
      const [taken] = envelopesOf(await queue.fetch('collecting', 60_000, 2, 64, { runsNext: true, startsBatch: false }));
      expect([taken!.id, taken!.runBegan]).to.deep.equal([big, false]);
      expect(await redis.hget(k.base + big, 'rt')).to.equal(null);
    });

    it('a take that empties the queue answers 0 waiting without popping an empty list', async () => {
      await enqueue(1);
      const outcome = await queue.fetch('empties', 60_000, 64, 64);
      expect(outcome === 'paused' ? -1 : outcome.waiting).to.equal(0);
      expect(envelopesOf(outcome)).to.have.length(1);
      expect(await redis.llen(k.wait)).to.equal(0);
    });
  });

  describe('a real worker', () => {
    let p: TestPlatform | undefined;
    let redis: Redis | undefined;

    before(async () => {
      p = await startPlatform({ worker: false });
      redis = new Redis(p.config.redisUrl);
    });
    after(async () => {
      redis?.disconnect();
      await p?.close();
    });

    /** Submit an mlp job with no worker running, and leave its envelope as three takes and the stalled check left it. */
    async function stalledThrice(fields: Record<string, string>): Promise<Job> {
      const { job } = await postJob(p!, { model: 'mlp', input: { features: Array.from({ length: 64 }, (_, i) => i / 64) } });
      const k = interactiveKeys(p!.prefix, 'mlp', '2');
      const [envelope] = await waitUntil(async () => {
        const wait = await redis!.lrange(k.wait, 0, -1);
        return wait.length > 0 ? wait : null;
      }, 10_000, 'the envelope to be queued');
      const at = String(Date.now());
      await redis!.hset(k.base + envelope!, { processedOn: at, ft: at, ats: '3', stc: '3', defa: 'job stalled more than allowable limit', ...fields });
      return job;
    }

    it('an envelope that stalled three times beside other runs, none its own, runs and succeeds', async () => {
      const job = await stalledThrice({ ors: '0', rt: '1' });
      await p!.startWorker();
      try {
        const ended = await pollJob(p!, job.id, 20_000);
        expect({ status: ended.status, error: ended.error?.code }).to.deep.equal({ status: 'succeeded', error: undefined });
      } finally {
        await p!.closeWorker();
      }
    });

    it('one whose own runs stalled three times still ends worker_lost', async () => {
      // Two stalls of its own before, and the third take had begun a run of it (`rt` = its take, 3).
      const job = await stalledThrice({ ors: '2', rt: '3' });
      await p!.startWorker();
      try {
        const ended = await pollJob(p!, job.id, 20_000);
        expect({ status: ended.status, error: ended.error?.code }).to.deep.equal({ status: 'failed', error: 'worker_lost' });
      } finally {
        await p!.closeWorker();
      }
    });
  });

  describe('beside inputs that kill their workers (SIGFPE: INT32_MIN / -1)', () => {
    let repo: TempModelRepo | undefined;
    let p: TestPlatform | undefined;
    const workers = new WorkerProcesses({ WORKER_LOCK_MS: '1000' });

    before(async () => {
      repo = tempModelRepo({ idiv: { onnx: int32DivModel(), config: { max_batch_size: 8, max_delay_ms: 20 } } });
      p = await startPlatform({ models: repo.root, worker: false, env: { WORKER_LOCK_MS: '1000' } });
    });
    after(async () => {
      await workers.stop();
      await p?.close();
      repo?.remove();
    });

    it("two crashing jobs and a good one, each its own envelope: the good job succeeds, the crashing ones fail alone", async () => {
      // Queued before any worker: the first take runs all three in one batch, which kills it; then each runs
      // alone, and each crashing job kills one more worker while the others wait beside it.
      const ids: string[] = [];
      for (const [a, b] of [[-2147483648, -1], [-2147483648, -1], [84, 2]] as const) {
        ids.push((await postJob(p!, { model: 'idiv', input: { a: [a], b: [b] } })).job.id);
      }
      const ended = async () => {
        const jobs = await Promise.all(ids.map((id) => getJob(p!, id)));
        return jobs.every((j) => isEnded(j.status)) ? jobs : null;
      };
      const deaths: Exit[] = [];
      let jobs: Job[] | null = null;
      for (let round = 0; round < 6 && !jobs; round++) {
        const { exit } = workers.start(p!);
        const seen = await waitUntil(async () => ((await ended()) ? { done: true } : exit() ? { died: exit()! } : null), 60_000, 'the jobs to end or the worker to die');
        if (seen.died) deaths.push(seen.died);
        jobs = await ended();
      }
      expect(jobs, `the jobs never ended; workers died: ${JSON.stringify(deaths)}`).to.not.equal(null);
      const [bad1, bad2, good] = jobs!;
      // Before, the good job was counted a stall at each of the three deaths, and failed worker_lost.
      expect({ status: good!.status, output: good!.output, error: good!.error?.code }).to.deep.equal({ status: 'succeeded', output: { y: [42] }, error: undefined });
      expect([bad1, bad2].map((j) => [j!.status, j!.error?.code])).to.deep.equal([
        ['failed', 'inference_failed'],
        ['failed', 'inference_failed'],
      ]);
      expect(deaths.length, 'workers the crashing jobs killed').to.equal(3);
    });
  });
});
