import http from 'node:http';
import { expect } from 'chai';
import type { ModelDescription } from '@infer/contract';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * The admin router's automatic OPTIONS answer, and a
 * `"__proto__"` member in a routing body.
 */

const ADMIN = 'options-admin-secret';

/** A request with any method (fetch cannot send every one as is), its status, headers and body. */
function request(p: TestPlatform, method: string, path: string, headers: Record<string, string> = {}, body?: string) {
  const url = new URL(p.baseUrl);
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method, path, headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const asAdmin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };

describe('OPTIONS under /v1 and __proto__ in routing weights', function () {
  this.timeout(60_000);
  let p: TestPlatform;

  before(async () => {
    p = await startPlatform({ env: { ADMIN_API_KEYS: `ops:${ADMIN}` } });
    await waitUntil(
      async () => {
        const m = (await (await p.api('/v1/models/mlp')).json()) as ModelDescription;
        return m.versions_detail.length === 2 && m.versions_detail.every((d) => d.state === 'ready');
      },
      20_000,
      'both mlp versions ready',
    );
  });
  after(async () => {
    await p?.close();
  });

  // docs/api.md: "Every /v1 route needs Authorization: Bearer <key>" and "A path or method the
  // gateway does not serve answers 404 not_found (there is no 405); under /v1 the key is checked first."
  it('OPTIONS on an admin route with no key at all is 401, not an answer listing its methods', async () => {
    for (const path of ['/v1/models/mlp/routing', '/v1/models/mlp/rollouts', '/v1/models']) {
      const res = await request(p, 'OPTIONS', path);
      expect(res.status, `OPTIONS ${path} without a key: ${res.status} allow=${res.headers.allow} ${res.body}`).to.equal(401);
    }
  });

  it('OPTIONS on a /v1 route with a tenant key is 404 not_found (a method the gateway does not serve)', async () => {
    const res = await request(p, 'OPTIONS', '/v1/batches', { authorization: `Bearer ${TEST_KEY}` });
    expect(res.status, `OPTIONS /v1/batches: ${res.status} allow=${res.headers.allow} ${res.body}`).to.equal(404);
  });

  // docs/api.md: invalid_routing 422 for weights that "name ... something that is not a version";
  // "constructor" is refused so, "__proto__" must be too (JSON.parse keeps it as an ordinary member).
  it('routing weights naming "__proto__" are 422 invalid_routing, like any other non-version', async () => {
    try {
      const control = await request(p, 'PUT', '/v1/models/mlp/routing', asAdmin, '{"weights":{"1":100,"constructor":7}}');
      expect(control.status, control.body).to.equal(422);
      for (const body of ['{"weights":{"1":100,"__proto__":7}}', '{"weights":{"1":50,"2":50,"__proto__":{"1":1}}}']) {
        const res = await request(p, 'PUT', '/v1/models/mlp/routing', asAdmin, body);
        expect(res.status, `${body} → ${res.status} ${res.body.slice(0, 160)}`).to.be.oneOf([400, 422]);
      }
    } finally {
      await request(p, 'PUT', '/v1/models/mlp/routing', asAdmin, '{"weights":null}');
    }
  });
});
