import http from 'node:http';
import { expect } from 'chai';
import { mlpFeatures, streamedUpload } from './helpers/batches.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * docs/api.md, Errors: every error is an RFC 9457 problem whose `title` is
 * "the HTTP reason phrase of `status`". The 408 `request_timeout` problem
 * (an NDJSON upload cut at its time limit) is one of the gateway's answers
 * (the error table lists it), so its title must be "Request Timeout", as
 * Node itself names 408 (http.STATUS_CODES), not a generic "Error".
 */
describe('problem titles: the reason phrase of their status', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  before(async () => {
    // The 5-minute upload limit, shortened to half a second (as test/batch-upload-time-limit.test.ts does).
    p = await startPlatform({ worker: false, uploadTimeLimitMs: 500 });
  });
  after(async () => {
    await p?.close();
  });

  it('408 request_timeout carries title "Request Timeout" (the reason phrase), not "Error"', async () => {
    const { req, answer } = streamedUpload(p);
    // One line, then nothing more: the upload stalls until its time limit cuts it.
    req.write(JSON.stringify({ input: { features: mlpFeatures(1) } }) + '\n');
    const cut = await answer;
    req.destroy();
    expect(cut.status, cut.body).to.equal(408);
    const problem = JSON.parse(cut.body) as { title: string; status: number; code: string };
    expect(problem.code).to.equal('request_timeout');
    expect(problem.status).to.equal(408);
    expect(problem.title, `the problem's title (${cut.body})`).to.equal(http.STATUS_CODES[408]);
  });
});
