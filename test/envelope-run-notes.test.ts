import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, interactiveQueue } from '@infer/contract';
import { EnvelopeQueue, type FetchOutcome, type TakenEnvelope } from '@infer/job-store';
import { silentLogger } from '@infer/logger';
import { ModelRepository, runModel } from '@infer/models';
import { EnvelopeRunNotes, type NotedEnvelope } from '../apps/worker/src/interactive/envelope-run-notes.js';
import { runMicrobatch } from '../apps/worker/src/interactive/microbatch.js';
import { SHIPPED_MODELS, TEST_REDIS_URL } from './helpers/platform.js';
import { deletePrefix, uniquePrefix } from './helpers/redis-keys.js';
import { startStalledCheck, type StalledCheck } from './helpers/stalled-check.js';
import { waitUntil } from './helpers/wait.js';

/** The queue, counting its MARK_ENVELOPE_RUNS calls (one command each). */
class CountingQueue extends EnvelopeQueue {
  /** Each call: per envelope, "note <id>" or "clear <id>". */
  readonly calls: string[][] = [];
  override markRunsBegun(envelopes: Parameters<EnvelopeQueue['markRunsBegun']>[0]): Promise<number> {
    this.calls.push(envelopes.map((e) => `${e.take === null ? 'clear' : 'note'} ${e.id}`));
    return super.markRunsBegun(envelopes);
  }
}

/**
 * A blocking take notes the envelopes it brings as begun (`rt`) when they
 * run next; a worker that dies then counts the stall as theirs. Should
 * another's run start before theirs all the same (this worker's batch
 * before them, a bulk slice, another version's batch), their notes are
 * cleared before it starts, and set again just before their own run: a
 * crash in another's run is not theirs, and their jobs do not run one at a
 * time for it. Real Redis, real takes, real runs of mlp.
 */
describe('interactive envelopes: run notes held while they wait (EnvelopeRunNotes)', function () {
  this.timeout(60_000);
  const prefix = uniquePrefix('run-notes');
  const k = interactiveKeys(prefix, 'm', '1');
  let redis: Redis;
  let queue: CountingQueue;
  let notes: EnvelopeRunNotes;
  let repo: ModelRepository;
  let checker: StalledCheck | undefined;
  let seq = 0;

  before(async () => {
    redis = new Redis(TEST_REDIS_URL);
    queue = new CountingQueue(redis, { prefix, model: 'm', version: '1', resultTtlMs: 60_000 });
    notes = new EnvelopeRunNotes(queue, silentLogger);
    repo = await ModelRepository.load(SHIPPED_MODELS);
  });
  after(async () => {
    await checker?.close();
    await repo.close();
    await deletePrefix(TEST_REDIS_URL, prefix);
    redis.disconnect();
  });

  const feeds = () => ({ features: { datatype: 'FP32' as const, shape: [1, 64], data: new Float32Array(64) } });
  const rtOf = (e: NotedEnvelope) => redis.hget(k.base + e.id, 'rt');

  /** Queue a one-job envelope as ENQUEUE leaves one, and take it (`runsNext`: as an idle worker's take, whose envelopes run next). */
  async function take(token: string, runsNext: boolean, lockMs = 60_000): Promise<TakenEnvelope & NotedEnvelope> {
    const id = `e${++seq}`;
    await redis.hset(k.base + id, { name: 'envelope', data: '{}', timestamp: String(Date.now()), n: '1' });
    await redis.lpush(k.wait, id);
    const outcome: FetchOutcome = await queue.fetch(token, lockMs, 64, 64, { runsNext });
    expect(outcome).to.not.equal('paused');
    const [taken] = (outcome as Exclude<FetchOutcome, 'paused'>).envelopes;
    expect([taken?.id, taken?.runBegan]).to.deep.equal([id, runsNext]);
    return { ...taken!, token };
  }
  const takeNoted = (token: string, lockMs?: number) => take(token, true, lockMs);

  it("another's run clears the note before it starts; the envelope's own run notes it again just before it", async () => {
    const model = repo.resolve('mlp', '2');
    const held = await takeNoted('worker-a');
    notes.taken(held);
    expect(await rtOf(held), 'noted by the take').to.equal(String(held.take));

    let seenByOther: string | null | undefined;
    await runModel(model, feeds(), { before: async () => void (seenByOther = await rtOf(held)), after: async () => undefined });
    expect(seenByOther, "as another's run starts").to.equal(null);
    expect(held.runBegan).to.equal(false);

    // Its own batch: noted again before the run (written, not waited for; the same connection keeps the order).
    let seenByOwn: string | null | undefined;
    const watch = notes.watch([held]);
    await runModel(model, feeds(), {
      marks: watch.marks!,
      before: async () => {
        await watch.before();
        seenByOwn = await rtOf(held);
      },
      after: watch.after,
    });
    expect(seenByOwn, 'as its own run starts').to.equal(String(held.take));
    expect(held.runBegan).to.equal(true);
    notes.ended(held);
  });

  it("a run of its own batch leaves the note; once it ended, another's run writes nothing for it", async () => {
    const model = repo.resolve('mlp', '2');
    const held = await takeNoted('worker-b');
    notes.taken(held);
    await runModel(model, feeds(), notes.watch([held]));
    expect(await rtOf(held), 'after its own run').to.equal(String(held.take));
    notes.ended(held);
    await runModel(model, feeds());
    expect(await rtOf(held), "after another's run, once it ended").to.equal(String(held.take));
  });

  it("clears asked for before one run go to Redis as one command, for every envelope waiting", async () => {
    const model = repo.resolve('mlp', '2');
    const waiting = [await takeNoted('worker-c'), await takeNoted('worker-c'), await takeNoted('worker-c')];
    for (const e of waiting) notes.taken(e);
    const before = queue.calls.length;
    await runModel(model, feeds());
    expect(await Promise.all(waiting.map(rtOf))).to.deep.equal([null, null, null]);
    expect(queue.calls.slice(before), 'MARK_ENVELOPE_RUNS calls').to.deep.equal([waiting.map((e) => `clear ${e.id}`)]);
    for (const e of waiting) notes.ended(e);
  });

  it("under load (a batch waiting for the one running), the second run clears the first's notes before it starts: their run is over, their end not yet written", async () => {
    const model = repo.resolve('mlp', '2');
    // Taken while batches come one after another: not noted by their takes, each noted just before its batch's run.
    const [a, b] = [await take('worker-d', false), await take('worker-d', false)];
    notes.taken(a);
    notes.taken(b);
    const before = queue.calls.length;
    const instance = () => [{ datatype: 'FP32' as const, shape: [64], bytes: new Uint8Array(256) }];
    let aAtB: string | null | undefined;
    const watchB = notes.watch([b]);
    // As the batcher runs them (two in flight): b's run waits for a's; each envelope ends (FINISH) only after its run.
    const runA = runMicrobatch(model, [instance()], notes.watch([a])).then(() => notes.ended(a));
    const runB = runMicrobatch(model, [instance()], {
      ...watchB,
      before: async () => {
        await watchB.before();
        aAtB = await rtOf(a);
      },
    }).then(() => notes.ended(b));
    await Promise.all([runA, runB]);
    expect(queue.calls.slice(before)).to.deep.equal([[`note ${a.id}`], [`clear ${a.id}`], [`note ${b.id}`]]);
    expect(aAtB, "a's note as b's run starts").to.equal(null);
  });

  it("so a worker that dies in another's run leaves no stall of its own on the envelope it held: taken again, it runs in a batch", async () => {
    const model = repo.resolve('mlp', '2');
    checker = startStalledCheck(TEST_REDIS_URL, interactiveQueue(prefix, 'm', '1'));
    // A 300 ms lock: the worker "dies" with it held (nothing renews it), and the stalled check puts it back.
    const held = await takeNoted('dies', 300);
    notes.taken(held);
    await runModel(model, feeds());
    await waitUntil(async () => ((await redis.lrange(k.wait, 0, -1)).includes(held.id) ? true : null), 10_000, 'the stalled check to put it back');
    const again = await queue.fetch('next', 60_000, 64, 64, { runsNext: false });
    const [taken] = again === 'paused' ? [] : again.envelopes;
    expect({ id: taken?.id, own: taken?.ownStalls, defa: taken?.fields.has('defa') }).to.deep.equal({ id: held.id, own: 0, defa: false });
  });


  it('with Redis away, a run does not wait for it to clear a held note: it goes ahead within a second or so', async () => {
    // As the worker's store connection: maxRetriesPerRequest null, so commands wait offline until Redis is back.
    const away = new Redis('redis://127.0.0.1:1', { maxRetriesPerRequest: null, retryStrategy: () => 200, lazyConnect: true });
    away.on('error', () => undefined);
    void away.connect().catch(() => undefined);
    try {
      const offline = new EnvelopeRunNotes(new EnvelopeQueue(away, { prefix, model: 'm', version: '1', resultTtlMs: 1000 }), silentLogger);
      const held: NotedEnvelope = { id: 'away-1', token: 't', take: 1, runBegan: true };
      offline.taken(held);
      const ran = runModel(repo.resolve('mlp', '2'), feeds()).then(() => 'ran');
      const outcome = await Promise.race([ran, new Promise((r) => setTimeout(() => r('still waiting for Redis'), 5_000))]);
      expect(outcome).to.equal('ran');
      offline.ended(held);
    } finally {
      away.disconnect();
    }
  });
});
