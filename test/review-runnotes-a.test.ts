import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys } from '@infer/contract';
import { EnvelopeQueue, type FetchOutcome, type TakenEnvelope } from '@infer/job-store';
import { silentLogger } from '@infer/logger';
import { holdRunMark, dropRunMark, ModelRepository, runModel, type RunMark } from '@infer/models';
import { EnvelopeRunNotes, type NotedEnvelope } from '../apps/worker/src/interactive/envelope-run-notes.js';
import { runMicrobatch } from '../apps/worker/src/interactive/microbatch.js';
import { SHIPPED_MODELS, TEST_REDIS_URL } from './helpers/platform.js';
import { deletePrefix, uniquePrefix } from './helpers/redis-keys.js';

class CountingQueue extends EnvelopeQueue {
  calls: Array<Array<string | null>> = [];
  override markRunsBegun(envelopes: Parameters<EnvelopeQueue['markRunsBegun']>[0]): Promise<number> {
    this.calls.push(envelopes.map((e) => (e.take === null ? `clear ${e.id}` : `note ${e.id}`)));
    return super.markRunsBegun(envelopes);
  }
}

describe('review: EnvelopeRunNotes', function () {
  this.timeout(30_000);
  const prefix = uniquePrefix('rv-notes');
  const k = interactiveKeys(prefix, 'm', '1');
  let redis: Redis;
  let queue: CountingQueue;
  let notes: EnvelopeRunNotes;
  let repo: ModelRepository;
  let seq = 0;

  before(async () => {
    redis = new Redis(TEST_REDIS_URL);
    queue = new CountingQueue(redis, { prefix, model: 'm', version: '1', resultTtlMs: 60_000 });
    notes = new EnvelopeRunNotes(queue, silentLogger);
    repo = await ModelRepository.load(SHIPPED_MODELS);
  });
  after(async () => {
    await repo.close();
    await deletePrefix(TEST_REDIS_URL, prefix);
    redis.disconnect();
  });

  const feeds = () => ({ features: { datatype: 'FP32' as const, shape: [1, 64], data: new Float32Array(64) } });
  const instance = () => [{ datatype: 'FP32' as const, shape: [64], bytes: new Uint8Array(256) }];

  async function take(token: string, runsNext: boolean): Promise<TakenEnvelope & NotedEnvelope> {
    const id = `e${++seq}`;
    await redis.hset(k.base + id, { name: 'envelope', data: '{}', timestamp: String(Date.now()), n: '1' });
    await redis.lpush(k.wait, id);
    const outcome: FetchOutcome = await queue.fetch(token, 60_000, 64, 64, { runsNext });
    const [taken] = (outcome as Exclude<FetchOutcome, 'paused'>).envelopes;
    return { ...taken!, token };
  }

  it('under load (two batches in flight), the second batch writes nothing for the first batch\'s envelopes', async () => {
    const model = repo.resolve('mlp', '2');
    // Two batches as the worker's batcher runs them (maxInFlight 2): B's run waits for A's.
    const a = await take('w', false);
    const b = await take('w', false);
    notes.taken(a);
    notes.taken(b);
    queue.calls = [];
    // As runSlices: runMicrobatch, then finish (which calls ended) for the envelopes done.
    const runA = runMicrobatch(model, [instance()], notes.watch([a])).then(() => notes.ended(a));
    const runB = runMicrobatch(model, [instance()], notes.watch([b])).then(() => notes.ended(b));
    await Promise.all([runA, runB]);
    // Before the change: [[note a], [note b]]: one command per batch.
    expect(queue.calls).to.deep.equal([[`note ${a.id}`], [`note ${b.id}`]]);
  });

  it('a mark held while a run awaits its clears (a take read then) is cleared before that run starts', async () => {
    const model = repo.resolve('mlp', '2');
    const cleared: string[] = [];
    const first: RunMark = { clear: () => new Promise((r) => setTimeout(() => { cleared.push('first'); r(); }, 20)) };
    const late: RunMark = { clear: async () => void cleared.push('late') };
    holdRunMark(first);
    // A take's reply read 5 ms later, while the run below awaits the clear of `first`.
    setTimeout(() => holdRunMark(late), 5);
    let seen: string[] = [];
    await runModel(model, feeds(), { before: async () => void (seen = [...cleared]), after: async () => undefined });
    dropRunMark(late);
    expect(seen, 'cleared before the run starts').to.deep.equal(['first', 'late']);
  });
});
