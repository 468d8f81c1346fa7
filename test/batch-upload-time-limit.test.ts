import { expect } from 'chai';
import type { BatchList } from '@infer/contract';
import { mlpFeatures, streamedUpload, toNdjson, uploadNdjson } from './helpers/batches.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * docs/api.md (Time limit): an NDJSON upload that does not arrive whole in
 * time is cut with `408 request_timeout`, a problem like every other error
 * (an SDK reads its code), with `Connection: close`; nothing of it is kept,
 * and the tenant's open-batch slot comes free. The 5-minute limit is
 * shortened here to half a second.
 */
describe('batches: an upload slower than its time limit', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ uploadTimeLimitMs: 500, env: { TENANT_MAX_OPEN_BATCHES: '1' } });
  });
  after(async () => {
    await p.close();
  });

  it('is cut with 408 request_timeout (problem+json, Connection: close), keeps nothing, and frees the slot', async () => {
    const { req, answer } = streamedUpload(p);
    let headers: Record<string, string | string[] | undefined> = {};
    req.on('response', (res) => (headers = res.headers));
    // One line, then nothing more: a client stuck half-way.
    req.write(JSON.stringify({ input: { features: mlpFeatures(1) } }) + '\n');
    const cut = await answer;
    req.destroy();
    expect(cut.status, cut.body).to.equal(408);
    expect(headers['content-type']).to.match(/^application\/problem\+json/);
    expect(headers.connection).to.equal('close');
    expect((JSON.parse(cut.body) as { code: string }).code).to.equal('request_timeout');
    const list = (await (await p.api('/v1/batches')).json()) as BatchList;
    expect(list.data).to.deep.equal([]);
    // The slot (one open batch at most) is free for the retry.
    const retry = await uploadNdjson(p, toNdjson([{ input: { features: mlpFeatures(2) } }]));
    expect(retry.status, await retry.clone().text()).to.equal(202);
  });
});
