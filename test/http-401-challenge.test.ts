import { expect } from 'chai';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * RFC 9110 §15.5.2: "The server generating a 401 response MUST send a
 * WWW-Authenticate header field containing at least one challenge
 * applicable to the target resource." The API's scheme is Bearer (the
 * OpenAPI document's `bearerAuth`, docs/api.md "Authentication"); the queue
 * dashboard challenges its 401s with Basic; the API's own 401s, on the job
 * routes' fast path, the Express routes and the admin routes, with Bearer.
 */

const ADMIN = 'http-401-admin';

describe('http: every 401 carries a WWW-Authenticate challenge', function () {
  this.timeout(60_000);
  let p: TestPlatform;

  before(async () => {
    p = await startPlatform({ worker: false, env: { ADMIN_API_KEYS: `ops:${ADMIN}` } });
  });
  after(async () => {
    await p?.close();
  });

  it('no key or an unknown key: 401 with WWW-Authenticate: Bearer, fast path and Express alike', async () => {
    const cases: Array<[string, string, RequestInit & { key?: string | null }]> = [
      ['fast path POST /v1/jobs, no key', '/v1/jobs', { method: 'POST', body: '{}', key: null }],
      ['fast path GET /v1/jobs/{id}, unknown key', '/v1/jobs/abcdefgh', { key: 'not-a-key' }],
      ['Express GET /v1/models, no key', '/v1/models', { key: null }],
      ['Express GET /v1/batches, unknown key', '/v1/batches', { key: 'not-a-key' }],
      ['admin PUT /v1/models/mlp/routing, no key', '/v1/models/mlp/routing', { method: 'PUT', body: '{"weights":null}', key: null }],
    ];
    for (const [what, path, init] of cases) {
      const res = await p.api(path, init);
      await res.text();
      expect(res.status, what).to.equal(401);
      expect(res.headers.get('www-authenticate'), `${what}: WWW-Authenticate`).to.match(/^Bearer\b/i);
    }
  });
});
