import http from 'node:http';
import { expect } from 'chai';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * docs/api.md, Conventions: "A path or method the gateway does not serve
 * answers `404 not_found` (there is no 405)". The error table: `unauthorized`
 * (401) is "no key, or an unknown one".
 */

const ADMIN = 'http-admin-secret';

function request(p: TestPlatform, method: string, path: string, headers: Record<string, string> = {}) {
  const url = new URL(p.baseUrl);
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method, path, headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end();
  });
}

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

describe('http: methods the gateway does not serve', function () {
  this.timeout(60_000);
  let p: TestPlatform;

  before(async () => {
    p = await startPlatform({ worker: false, env: { ADMIN_API_KEYS: `ops:${ADMIN}` } });
  });
  after(async () => {
    await p?.close();
  });

  // Express's router answers OPTIONS itself (200, `Allow: GET, HEAD`, text/plain body "GET, HEAD") for any
  // path it routes; app.ts turns that off under /v1 only (`unservedOptions`), not for the ops routes.
  it('OPTIONS on the operations routes is 404 not_found (problem+json), not 200 with an Allow list', async () => {
    const wrong: string[] = [];
    for (const path of ['/healthz', '/readyz', '/metrics', '/openapi.json']) {
      const why = notNotFound(`OPTIONS ${path}`, await request(p, 'OPTIONS', path));
      if (why) wrong.push(why);
    }
    expect(wrong, 'answers that are not 404 not_found').to.deep.equal([]);
  });

  // An admin key is a known key: on an admin path with a method no route serves, the answer is the
  // unserved route's 404, not "A valid API key is required" (the /v1 tenants' guard, which knows only API
  // keys, runs before the 404).
  it('an admin key on an admin path with a method it does not serve is 404 not_found, not 401', async () => {
    const asAdmin = { authorization: `Bearer ${ADMIN}` };
    const wrong: string[] = [];
    for (const [method, path] of [
      ['GET', '/v1/models/mlp/routing'],
      ['DELETE', '/v1/models/mlp/rollouts'],
      ['GET', '/v1/models/mlp/versions/1/load'],
      ['OPTIONS', '/v1/models/mlp/routing'],
    ] as const) {
      const why = notNotFound(`${method} ${path} with an admin key`, await request(p, method, path, asAdmin));
      if (why) wrong.push(why);
    }
    expect(wrong, 'answers that are not 404 not_found').to.deep.equal([]);
  });
});
