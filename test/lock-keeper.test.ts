import { expect } from 'chai';
import { Redis } from 'ioredis';
import { createLogger } from '@infer/logger';
import { LockKeeper, LockRenewal } from '@infer/locks';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/redis-keys.js';
import { blockEventLoop, waitUntil } from './helpers/wait.js';

/** The warnings a pino logger wrote, by job id. */
class Warnings {
  readonly lines: Array<{ jobId?: string; msg: string; level: number; blockedMs?: number; jobs?: number }> = [];
  write(line: string): void {
    this.lines.push(JSON.parse(line) as Warnings['lines'][number]);
  }
  lostFor(id: string): number {
    return this.lines.filter((l) => l.jobId === id && l.msg.startsWith('lost the lock')).length;
  }
}

describe('LockKeeper: renewing the locks of held jobs', function () {
  this.timeout(30_000);

  it('reports a lock lost only when a held job fails two renewals in a row, and only once; a job ended meanwhile is never reported', () => {
    const log = new Warnings();
    // No thread: each renewal's answer is fed by hand, in the order the thread could send them.
    const keeper = new LockKeeper(undefined, createLogger({ level: 'warn', name: 'worker', destination: log }));
    try {
      for (const id of ['ended', 'flaky', 'lost']) keeper.hold(id, `token-${id}`);
      // 1: "ended" was removed in Redis by its end, whose answer is not back yet; "flaky" fails once.
      keeper.renewed(['ended', 'flaky', 'lost'], ['ended', 'flaky']);
      keeper.release('ended');
      keeper.renewed(['flaky', 'lost'], ['lost']); // 2: "lost" fails (its lock expired and another worker took it)
      keeper.renewed(['flaky', 'lost'], ['lost', 'flaky']); // 3: "lost" again (reported); "flaky" again, not twice in a row
      keeper.renewed(['ended', 'flaky', 'lost'], ['ended', 'lost']); // 4: "lost" already reported; "ended" let go before this answer
      expect(log.lostFor('ended'), 'a job that ended as its renewal failed').to.equal(0);
      expect(log.lostFor('flaky'), 'failures not in a row').to.equal(0);
      expect(log.lostFor('lost'), 'two failures in a row, reported once').to.equal(1);
      expect(keeper.size).to.equal(2);
    } finally {
      keeper.stop();
    }
  });

  describe('from its thread, against Redis', () => {
    const prefix = uniquePrefix('locks');
    const baseKey = `${prefix}:q:`;
    const stalledKey = `${prefix}:q:stalled`;
    const activeKey = `${prefix}:q:active`;
    let redis: Redis;
    let keeper: LockKeeper | undefined;
    const log = new Warnings();

    before(() => {
      redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
    });
    afterEach(() => keeper?.stop());
    after(async () => {
      redis.disconnect();
      await deletePrefix(TEST_REDIS_URL, prefix);
    });

    /** A job taken as a take script takes it: its lock set with the token, and (as BullMQ's stalled check leaves it) in the stalled set. */
    async function take(id: string, token: string, lockMs: number): Promise<void> {
      await redis.set(`${baseKey}${id}:lock`, token, 'PX', lockMs);
      await redis.sadd(stalledKey, id);
    }

    function keep(lockMs: number, maxRunMs: number): LockKeeper {
      const connection = new Redis(TEST_REDIS_URL, { lazyConnect: true });
      const k = new LockKeeper({ stalledKey, activeKey, baseKey, lockMs, maxRunMs, connection }, createLogger({ level: 'warn', name: 'worker', destination: log }));
      // The thread takes the connection's options, not the connection.
      connection.disconnect();
      return k;
    }

    it('keeps the locks of held jobs while the event loop is blocked longer than the lock (a long model run), and no longer the lock of a job let go', async () => {
      keeper = keep(1000, 60_000);
      await take('a', 'token-a', 1000);
      await take('b', 'token-b', 1000);
      keeper.hold('a', 'token-a');
      keeper.hold('b', 'token-b');
      // Let "b" go the next turn: the thread heard of it as held, then as let go.
      await new Promise((r) => setImmediate(r));
      keeper.release('b');
      await new Promise((r) => setImmediate(r));
      blockEventLoop(2500);
      expect(await redis.get(`${baseKey}a:lock`), 'renewed through the block').to.equal('token-a');
      expect(await redis.pttl(`${baseKey}a:lock`)).to.be.greaterThan(0);
      expect(await redis.sismember(stalledKey, 'a'), 'a renewal takes the job out of the stalled set').to.equal(0);
      expect(await redis.get(`${baseKey}b:lock`), 'a job let go is not renewed').to.equal(null);
    });

    it('keeps them all when more are held than its first snapshot buffer takes (it grows)', async () => {
      keeper = keep(1000, 60_000);
      // ~240 characters a job in the snapshot (ids this long), counted 3 bytes each: 400 jobs are ~4 times its first 64 KiB.
      const ids = Array.from({ length: 400 }, (_, i) => `many-${String(i).padStart(4, '0')}-${'x'.repeat(200)}`);
      for (const id of ids) await take(id, `token-${id}`, 1000);
      for (const id of ids) keeper.hold(id, `token-${id}`);
      await new Promise((r) => setImmediate(r));
      blockEventLoop(2500);
      const locks = await redis.mget(ids.map((id) => `${baseKey}${id}:lock`));
      expect(locks.filter((token, i) => token !== `token-${ids[i]}`), 'every lock renewed').to.deep.equal([]);
    });

    it("renews the jobs of a take in flight, found by its token in the active list, until the take's answer is read", async () => {
      keeper = keep(1000, 60_000);
      keeper.taking('token-take');
      await new Promise((r) => setImmediate(r));
      // Redis runs the take while the event loop is blocked: its jobs are locked and active, the reply unread.
      await take('t1', 'token-take', 1000);
      await redis.lpush(activeKey, 't1', 'someone-elses');
      await redis.set(`${baseKey}someone-elses:lock`, 'token-other', 'PX', 1000);
      blockEventLoop(2500);
      expect(await redis.get(`${baseKey}t1:lock`), 'renewed through the block').to.equal('token-take');
      expect(await redis.get(`${baseKey}someone-elses:lock`), "another take's job is not ours to renew").to.equal(null);
      // The answer is read and held nothing (say, the jobs were handed back): the token is no longer renewed.
      keeper.taken('token-take');
      await new Promise((r) => setImmediate(r));
      blockEventLoop(2500);
      expect(await redis.get(`${baseKey}t1:lock`)).to.equal(null);
    });

    it('starts its thread again when it stops, and keeps renewing what was held', async () => {
      keeper = keep(1000, 60_000);
      await take('r', 'token-r', 1000);
      keeper.hold('r', 'token-r');
      await new Promise((r) => setImmediate(r));
      const first = LockRenewal.thread!;
      await first.terminate();
      await waitUntil(() => log.lines.find((l) => l.msg === 'lock renewal failed' && String((l as { err?: string }).err).includes('started again')), 5000, 'the restart reported');
      // Stopped within a second of its start, it is started again a second later (no spinning on a thread that cannot live).
      await waitUntil(() => LockRenewal.thread !== first, 5000, 'a new thread');
      // Taken again as it would be (the first lock may have lapsed meanwhile, with a 1 s lock): the new thread renews it.
      await take('r', 'token-r', 1000);
      blockEventLoop(2500);
      expect(await redis.get(`${baseKey}r:lock`), 'renewed by the new thread').to.equal('token-r');
    });

    it('does not extend a lock that now carries another token (another worker took the job)', async () => {
      keeper = keep(1000, 60_000);
      await take('c', 'token-mine', 1000);
      keeper.hold('c', 'token-mine');
      await redis.set(`${baseKey}c:lock`, 'token-theirs', 'PX', 60_000);
      await waitUntil(() => log.lostFor('c') === 1, 10_000, 'the lost lock reported');
      expect(await redis.get(`${baseKey}c:lock`)).to.equal('token-theirs');
      expect(await redis.pttl(`${baseKey}c:lock`)).to.be.greaterThan(50_000);
    });

    it('lets the locks lapse once the event loop has been blocked past WORKER_MAX_RUN_MS (a hang), and says so when it comes back', async () => {
      keeper = keep(1000, 1000);
      await take('d', 'token-d', 1000);
      keeper.hold('d', 'token-d');
      await new Promise((r) => setImmediate(r));
      blockEventLoop(3500);
      expect(await redis.get(`${baseKey}d:lock`), 'not renewed past the bound').to.equal(null);
      const said = await waitUntil(() => log.lines.find((l) => l.msg.includes('blocked past WORKER_MAX_RUN_MS')), 5000, 'the hang logged');
      expect(said.level).to.equal(50);
      expect(said.jobs).to.equal(1);
      expect(said.blockedMs).to.be.greaterThan(1000);
    });
  });
});
