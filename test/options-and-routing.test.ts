import http from 'node:http';
import { expect } from 'chai';
import type { ModelDescription } from '@infer/contract';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * Methods and paths the gateway does not serve (docs/api.md: 404 not_found,
 * no 405, OPTIONS included; under /v1 the key is checked first, an admin key
 * counting), the 401's challenge, and a `"__proto__"` member in a routing
 * body.
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

/** What is wrong with an answer that should be the unserved route's 404 not_found problem, or undefined. */
function notNotFound(what: string, res: { status: number; headers: http.IncomingHttpHeaders; body: string }): string | undefined {
  let code: unknown;
  try {
    code = (JSON.parse(res.body) as { code?: unknown }).code;
  } catch {
    code = undefined;
  }
  if (res.status === 404 && /^application\/problem\+json/.test(res.headers['content-type'] ?? '') && code === 'not_found') return undefined;
  return `${what}: ${res.status} content-type=${res.headers['content-type']} allow=${res.headers.allow} ${res.body.slice(0, 160)}`;
}

describe('unserved methods, OPTIONS, 401 challenges and __proto__ in routing weights', function () {
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

  // Express's router answers OPTIONS itself (200, `Allow: GET, HEAD`, text/plain body "GET, HEAD") for any
  // path it routes; app.ts turns it off for the whole gateway (`unservedOptions`), the ops routes included.
  it('OPTIONS on the operations routes is 404 not_found (problem+json), not 200 with an Allow list', async () => {
    const wrong: string[] = [];
    for (const path of ['/healthz', '/readyz', '/metrics', '/openapi.json']) {
      const why = notNotFound(`OPTIONS ${path}`, await request(p, 'OPTIONS', path));
      if (why) wrong.push(why);
    }
    expect(wrong, 'answers that are not 404 not_found').to.deep.equal([]);
  });

  // An admin key is a known key: on a path or method no route serves, the answer is the unserved route's
  // 404, not "A valid API key is required" (the /v1 tenants' guard, which knows only API keys).
  it('an admin key on a /v1 path or method nobody serves, admin paths included, is 404 not_found (the key counts); on a tenant route it is no API key (401)', async () => {
    const asAdmin = { authorization: `Bearer ${ADMIN}` };
    const wrong: string[] = [];
    for (const [method, path] of [
      ['GET', '/v1/models/mlp/routing'],
      ['DELETE', '/v1/models/mlp/rollouts'],
      ['GET', '/v1/models/mlp/versions/1/load'],
      ['OPTIONS', '/v1/models/mlp/routing'],
      ['GET', '/v1/nope'],
      ['GET', '/v1'],
      ['DELETE', '/v1/jobs/aaaaaaaaAAAAAAAAAAAAAAAAAAAAAA'],
      ['GET', '/v1/jobs'],
      ['PUT', '/v1/batches'],
      ['POST', '/v1/webhooks/secret'],
    ] as const) {
      const why = notNotFound(`${method} ${path} with an admin key`, await request(p, method, path, asAdmin));
      if (why) wrong.push(why);
    }
    expect(wrong, 'answers that are not 404 not_found').to.deep.equal([]);
    for (const [method, path] of [
      ['GET', '/v1/batches'],
      ['GET', '/V1/Batches/'],
      ['HEAD', '/v1/webhooks/secret'],
      ['POST', '/v1/batches/b/cancel'],
    ] as const) {
      expect((await request(p, method, path, asAdmin)).status, `${method} ${path} with an admin key`).to.equal(401);
    }
  });

  // RFC 9110 §15.5.2: a 401 carries a challenge; the API's is Bearer (the dashboard's, Basic).
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
