import { expect } from 'chai';
import { Redis } from 'ioredis';
import { createLogger } from '@infer/logger';
import { LockKeeper, LockRenewal } from '@infer/locks';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/redis-keys.js';
import { waitUntil } from './helpers/wait.js';

class Lines {
  readonly lines: Array<{ msg: string; err?: string }> = [];
  write(line: string): void {
    this.lines.push(JSON.parse(line) as Lines['lines'][number]);
  }
}

/**
 * The held-jobs snapshot's sequence count is an Int32 that wraps to negative after 2^31 increments
 * (days of a busy worker). The thread tells a write in progress by the count's low bit, so a
 * half-written snapshot is never parsed, past the wrap too; and text that does not parse is read again,
 * never thrown in the thread (which would kill it).
 */
describe('locks: the snapshot sequence count past 2^31', function () {
  this.timeout(30_000);
  const prefix = uniquePrefix('rvl2-seq');
  const baseKey = `${prefix}:q:`;
  const stalledKey = `${prefix}:q:stalled`;
  const activeKey = `${prefix}:q:active`;
  let redis: Redis;
  const keepers: LockKeeper[] = [];
  const log = new Lines();

  before(() => {
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  });
  after(async () => {
    for (const k of keepers) k.stop();
    redis.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  function keep(): LockKeeper {
    const connection = new Redis(TEST_REDIS_URL, { lazyConnect: true });
    const k = new LockKeeper({ stalledKey, activeKey, baseKey, lockMs: 1000, maxRunMs: 60_000, connection }, createLogger({ level: 'warn', name: 'worker', destination: log }));
    connection.disconnect();
    keepers.push(k);
    return k;
  }

  it('never reads a snapshot while it is being written, whatever the count', async () => {
    const writing = keep();
    const steady = keep();
    await redis.set(`${baseKey}s:lock`, 'token-s', 'PX', 1000);
    steady.hold('s', 'token-s');
    let renewals = 0;
    const renewed = steady.renewed.bind(steady);
    steady.renewed = (ids, failed) => {
      renewals++;
      renewed(ids, failed);
    };
    await new Promise((r) => setImmediate(r));
    const thread = LockRenewal.thread;

    // The state a reader finds in the middle of a write, once the count has wrapped: it was
    // 0x7ffffffe (steady), a write made it -2^31 (steady), the next write's first add made it
    // -2^31 + 1 (odd: being written), and encodeInto has written part of the new text.
    const buffer = (writing as unknown as { renewal: { held: { buffer: SharedArrayBuffer } } }).renewal.held.buffer;
    const header = new Int32Array(buffer, 0, 2);
    const bytes = new Uint8Array(buffer, 8);
    const half = new TextEncoder().encode('{"held":[["a","token-');
    bytes.set(half);
    Atomics.store(header, 1, half.length);
    Atomics.store(header, 0, -(2 ** 31) + 1);

    // Several ticks of the thread (the steady keeper's renewals), or the thread dying.
    await waitUntil(() => renewals >= 4 || log.lines.some((l) => String(l.err).includes('started again')), 15_000, 'four renewals or a restart');
    const restarts = log.lines.filter((l) => String(l.err).includes('started again'));
    expect(restarts.map((l) => l.err), 'the thread read the half-written snapshot and died').to.deep.equal([]);
    expect(LockRenewal.thread).to.equal(thread);
  });
});
