/**
 * docs/sdk.md says an upload refused
 * for the batch as a whole throws the InferApiError "at once, with
 * `retryAfter` set" (`429 quota_exceeded`, `retryAfter` 30), and a gateway
 * cuts an upload that has not arrived whole in time (408). Both answers
 * come while the SDK is still streaming the body (duplex: 'half'); they
 * depend on undici handing back the early answer, with its problem+json,
 * rather than a bare "fetch failed".
 */
import { expect } from 'chai';
import { InferApiError, InferClient } from '@infer/sdk';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';

const line = `${JSON.stringify({ input: { features: new Array(64).fill(0.5) } })}\n`;

describe('sdk: an upload refused while its body is still streaming throws the problem', function () {
  this.timeout(60_000);
  let p: TestPlatform | undefined;
  afterEach(async () => {
    await p?.close();
    p = undefined;
  });

  it('429 quota_exceeded with retryAfter 30 when the tenant is at TENANT_MAX_OPEN_BATCHES, the source not read to its end', async () => {
    p = await startPlatform({ worker: false, env: { TENANT_MAX_OPEN_BATCHES: '1' } });
    const client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
    await client.batches.create({ model: 'mlp', items: [{ input: { features: new Array(64).fill(0.5) } }] }); // stays open: no worker
    let pulled = 0;
    const cap = 1_000_000;
    function* many() {
      while (pulled < cap) {
        pulled++;
        yield line;
      }
    }
    const err = await client.batches.upload({ model: 'mlp' }, many()).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(InferApiError);
    expect(err).to.include({ status: 429, code: 'quota_exceeded', retryAfter: 30 });
    expect(pulled).to.be.below(cap);
  });

  it('408 request_timeout when the source stalls past the upload time limit', async () => {
    p = await startPlatform({ worker: false, uploadTimeLimitMs: 300 });
    const client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
    let release!: () => void;
    const stalled = new Promise<void>((resolve) => (release = resolve));
    async function* stalling() {
      yield line;
      await stalled;
      yield line;
    }
    const err = await client.batches.upload({ model: 'mlp' }, stalling()).catch((e: unknown) => e);
    release();
    expect(err).to.be.instanceOf(InferApiError);
    expect(err).to.include({ status: 408, code: 'request_timeout' });
  });
});
