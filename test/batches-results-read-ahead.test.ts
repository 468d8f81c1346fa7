import { expect } from 'chai';
import { Redis } from 'ioredis';
import { BatchStore, type BatchRecord } from '@infer/batch-store';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/platform.js';

/**
 * A results download reads stored chunks ahead of what it sends, bounded by
 * bytes (about 16 MiB held, one chunk ahead at least), not by a count:
 * chunks of a model with a variable output are not bounded by the 16 MiB
 * output cap, so a chunk's stored result can be any size. Four of 9 MiB
 * read at once would hold 36 MiB per download before anything was sent.
 */
describe('batches: results read ahead, with large stored chunks', function () {
  this.timeout(30_000);
  const prefix = uniquePrefix('ahead');
  const redis = new Redis(TEST_REDIS_URL);

  after(async () => {
    redis.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it('holds about 16 MiB of stored results ahead, not four large chunks, before its first piece', async () => {
    const store = new BatchStore(redis, { prefix, resultTtlMs: 60_000 });
    const id = 'batch_ahead';
    const resultsKey = `${prefix}:batch:{${id}}:results`;
    const chunkBytes = 9 << 20;
    // Stored as NDJSON (what an older worker wrote): passed through as it is, which keeps the test about the read-ahead.
    const line = '{"index":0,"custom_id":null,"status":"succeeded","output":{"y":[0]},"error":null}\n';
    const body = Buffer.alloc(chunkBytes, 'x');
    body.write(line);
    body[chunkBytes - 1] = 0x0a;
    for (let i = 0; i < 4; i++) await redis.hset(resultsKey, String(i), body);

    let fetchedBytes = 0;
    let fetches = 0;
    const original = redis.hgetBuffer.bind(redis);
    (redis as unknown as { hgetBuffer: typeof redis.hgetBuffer }).hgetBuffer = (async (key: string, field: string) => {
      fetches++;
      const b = await original(key, field);
      fetchedBytes += b?.byteLength ?? 0;
      return b;
    }) as typeof redis.hgetBuffer;

    const gen = store.results({ id, chunks: 4 } as BatchRecord);
    const first = await gen.next();
    expect(first.done).to.equal(false);
    // Let the reads already asked for land.
    await new Promise((resolve) => setImmediate(resolve));
    await redis.ping();
    await gen.return(undefined);
    expect({ fetches, mib: Math.round(fetchedBytes / (1 << 20)) }, 'chunks read (and MiB held) before the first piece went out').to.deep.equal({ fetches: 2, mib: 18 });
  });
});
