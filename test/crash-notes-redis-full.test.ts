import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys } from '@infer/contract';
import { EnvelopeQueue, noteRunning } from '@infer/job-store';
import { OwnRedis } from './helpers/redis-server.js';
import { uniquePrefix } from './helpers/redis-keys.js';

/**
 * A full Redis (maxmemory with `noeviction`, the policy the queue needs)
 * still takes and ends envelopes (FETCH and FINISH are `allow-oom`), and so
 * takes the notes of the crash containment (MARK_RUNNING, for envelopes and
 * bulk chunks alike): a crashing input must not run unnoted, and cost a
 * third worker, because Redis is at maxmemory.
 */
describe('crash-containment notes on a full Redis', function () {
  this.timeout(30_000);
  let server: OwnRedis | undefined;
  let redis: Redis | undefined;

  before(async () => {
    server = await OwnRedis.start(['--maxmemory-policy', 'noeviction']);
    redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
  });
  after(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  it('a note is written whenever the envelope it notes can still be ended (allow-oom like FETCH and FINISH)', async () => {
    const prefix = uniquePrefix('notes');
    const q = new EnvelopeQueue(redis!, { prefix, model: 'm', version: '1', resultTtlMs: 60_000 });
    const k = interactiveKeys(prefix, 'm', '1');
    const envelope = 'e1';
    const jk = `${k.base}${envelope}`;
    // An envelope held by take `tok` (its hash and lock as FETCH leaves them).
    await redis!.hset(jk, 'data', '{}', 'processedOn', String(Date.now()), 'n', '1');
    await redis!.set(`${jk}:lock`, 'tok', 'PX', 60_000);
    // Redis fills up: past maxmemory, writes without allow-oom are refused.
    await redis!.set(`${prefix}:ballast`, Buffer.alloc(2 * 1024 * 1024, 1));
    await redis!.config('SET', 'maxmemory', '1mb');
    const refused = await redis!.set(`${prefix}:probe`, 'x').then(() => false, (e: Error) => /OOM/.test(e.message));
    expect(refused, 'Redis refuses plain writes now').to.equal(true);
    const interactive = await q.markRunning(envelope, 'tok', 'job-1', 2).then(
      (ok) => (ok ? 'noted' : 'refused'),
      (e: Error) => `error: ${e.message}`,
    );
    // A bulk chunk's note, by EVAL on a connection without the job scripts (as a bulk worker's).
    const plain = new Redis(server!.url, { maxRetriesPerRequest: 1 });
    const bulk = await noteRunning(plain, jk, 'tok', '3').then(
      (ok) => (ok ? 'noted' : 'refused'),
      (e: Error) => `error: ${e.message}`,
    );
    plain.disconnect();
    // A batch's note that its run begins (MARK_ENVELOPE_RUNS), made just before the run.
    const begun = await q.markRunsBegun([{ id: envelope, token: 'tok', take: 2 }]).then(
      (n) => (n === 1 ? 'noted' : 'refused'),
      (e: Error) => `error: ${e.message}`,
    );
    // FINISH ends the envelope on the same full Redis.
    const ended = await q.finish([{ id: envelope, gateway: '', jobs: [{ id: 'job-1', record: Buffer.from('{}\n'), wait: false, deadline: false, completedHook: false }] }]);
    expect(ended, 'FINISH works on a full Redis').to.deep.equal([true]);
    expect({ interactive, bulk, begun }).to.deep.equal({ interactive: 'noted', bulk: 'noted', begun: 'noted' });
  });
});
