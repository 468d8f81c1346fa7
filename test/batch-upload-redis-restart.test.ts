import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import type { Batch, BatchList } from '@infer/contract';
import { b64Fp32, mlpFeatures, streamedUpload, toNdjson, uploadNdjson } from './helpers/batches.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { waitUntil } from './helpers/wait.js';

/**
 * Redis killed (and restarted, AOF) while an NDJSON upload streams in. The
 * gateway answers 503 `unavailable`, which docs/batches.md and api.md say
 * means "nothing of it is kept: send it again". The gateway stays up
 * throughout: it is not the known case of a gateway that dies mid-upload.
 */
describe('batches: Redis killed and restarted during a batch upload', function () {
  this.timeout(180_000);
  let dir: string;
  let redis: OwnRedis;
  let p: TestPlatform | undefined;

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'infer-upload-redis-'));
    redis = await OwnRedis.start(['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir]);
    p = await startPlatform({ redisUrl: redis.url, worker: false, env: { TENANT_MAX_OPEN_BATCHES: '1' } });
  });
  afterEach(async () => {
    await p?.close().catch(() => undefined);
    p = undefined;
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const line = (i: number) => JSON.stringify({ custom_id: `u${i}`, input: { features: b64Fp32(mlpFeatures(i)) } }) + '\n';
  const lines = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => line(from + k)).join('');
  const live = async (q: TestPlatform, pathname: string): Promise<Response> =>
    waitUntil(async () => {
      const res = await q.api(pathname).catch(() => null);
      return res && res.status !== 503 ? res : null;
    }, 30_000, `${pathname} to answer again after Redis came back`);

  /**
   * A streamed upload (Node's http client, its default keep-alive agent) that Redis dies under mid-body:
   * two chunks and a bit are sent and registered, Redis is killed, the rest of the body follows. Redis is
   * started again once the gateway has answered. Its answer, and the id its chunks were registered under.
   */
  async function uploadRedisDiesUnder(q: TestPlatform): Promise<{ status: number; code: string; id: string }> {
    const { req, answer: reply } = streamedUpload(q);
    const answer = reply.then(({ status, body }) => ({ status, code: status === -1 ? 'connection dropped' : ((JSON.parse(body) as { code?: string }).code ?? '') }));
    req.write(lines(0, 2 * 2048 + 5));
    const seen = await waitUntil(async () => {
      const list = (await (await q.api('/v1/batches')).json()) as BatchList;
      const b = list.data[0];
      return b && b.request_counts.total >= 2 * 2048 ? b : null;
    }, 30_000, 'the upload to register its first chunks');
    await redis.stop();
    req.end(lines(2 * 2048 + 5, 5 * 2048));
    const answered = await answer;
    await redis.start();
    return { ...answered, id: seen.id };
  }

  it('keeps nothing of an upload it answered 503: once Redis is back the batch is gone and the retry is accepted', async () => {
    const q = p!;
    const failed = await uploadRedisDiesUnder(q);
    expect({ status: failed.status, code: failed.code }).to.deep.equal({ status: 503, code: 'unavailable' });
    await live(q, '/v1/batches');

    // "Nothing of it is kept": no batch the client never got an id for, and no open-batch slot held by one.
    const gone = await waitUntil(async () => ((await live(q, `/v1/batches/${failed.id}`)).status === 404 ? true : null), 10_000, 'the batch of the failed upload to be gone').catch(() => false);
    const listed = ((await (await live(q, '/v1/batches')).json()) as BatchList).data.map((b) => `${b.id} ${b.status} total=${b.request_counts.total}`);
    expect(listed, 'batches listed after the failed upload').to.deep.equal([]);
    expect(gone, 'GET of the failed upload\'s batch is 404').to.equal(true);
    // "Send it again": the retry takes the tenant's one open-batch slot.
    const retry = await uploadNdjson(q, toNdjson([{ custom_id: 'again', input: { features: mlpFeatures(0) } }]));
    expect(retry.status, await retry.clone().text()).to.equal(202);
    expect(((await retry.json()) as Batch).request_counts.total).to.equal(1);
  });

  it('lets go of the failed upload\'s connection: the gateway then shuts down well within its 10 s deadline', async () => {
    const q = p!;
    const failed = await uploadRedisDiesUnder(q);
    expect(failed.status).to.equal(503);
    await live(q, '/v1/batches');
    const t = performance.now();
    p = undefined;
    await q.close();
    // apps/gateway/src/main.ts: shutdownDeadlineMs 10_000; past it the process exits 1.
    expect(performance.now() - t, 'ms for gateway.close() (what SIGTERM runs)').to.be.below(10_000);
  });
});
