import net from 'node:net';
import { expect } from 'chai';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * API keys and admin keys on every route, in every Authorization form a client may send.
 * docs/api.md Conventions: a missing or unknown key is 401 (WWW-Authenticate: Bearer), a tenant key on an
 * admin route 403, an admin key on a tenant route is not an API key (401); "any route may answer 500" only
 * for the unexpected: no header form may reach one.
 */

const ADMIN = 'review-admin-key~!';
// Keys of odd (visible ASCII) characters: a colon inside, percent signs, quotes, backslashes, braces.
const ODD_KEY = 'k:%41"\\{x}[]<>|^`\'#@!$&*()=+?;/';
const PLAIN_KEY = 'plain-key-1';

interface Raw {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One raw HTTP/1.1 request (so headers can be sent twice, or with odd spacing), Connection: close. */
function raw(base: string, method: string, path: string, headerLines: string[], body?: string): Promise<Raw> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(url.port), url.hostname);
    let text = '';
    s.on('data', (c: Buffer) => (text += c.toString('latin1')));
    s.on('error', reject);
    s.on('close', () => {
      const [head = '', ...rest] = text.split('\r\n\r\n');
      const [statusLine = '', ...lines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n') });
    });
    const b = body ?? '';
    s.write(
      `${method} ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n` +
        headerLines.map((h) => `${h}\r\n`).join('') +
        (body !== undefined ? `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(b)}\r\n` : '') +
        `\r\n${b}`,
    );
  });
}

const JOB = 'aaaaaaaaAAAAAAAAAAAAAAAAAAAAAA';
const BATCH = '00000000-0000-4000-8000-000000000000';
const EVENT = `msg_${'0'.repeat(32)}`;

const tenantRoutes: Array<[string, string, string?]> = [
  ['GET', '/v1/models'],
  ['GET', '/v1/models/mlp'],
  ['POST', '/v1/jobs', '{"model":"mlp","input":{}}'],
  ['GET', `/v1/jobs/${JOB}`],
  ['POST', `/v1/jobs/${JOB}/cancel`],
  ['POST', '/v1/batches', '{"model":"mlp","items":[]}'],
  ['GET', '/v1/batches'],
  ['GET', `/v1/batches/${BATCH}`],
  ['GET', `/v1/batches/${BATCH}/results`],
  ['POST', `/v1/batches/${BATCH}/cancel`],
  ['GET', '/v1/webhooks/secret'],
  ['GET', `/v1/jobs/${JOB}/webhook_deliveries`],
  ['GET', `/v1/batches/${BATCH}/webhook_deliveries`],
  ['GET', `/v1/webhook_deliveries/${EVENT}`],
  ['POST', `/v1/webhook_deliveries/${EVENT}/resend`],
];
const adminRoutes: Array<[string, string, string?]> = [
  ['PUT', '/v1/models/mlp/routing', '{"weights":null}'],
  ['POST', '/v1/models/mlp/versions/9/load'],
  ['POST', '/v1/models/mlp/versions/9/unload'],
  ['POST', '/v1/models/mlp/rollouts', '{}'],
  ['GET', '/v1/models/mlp/rollouts'],
  ['GET', '/v1/models/mlp/rollouts/ro_AAAAAAAAAAAA'],
  ['POST', '/v1/models/mlp/rollouts/ro_AAAAAAAAAAAA/cancel'],
  ['GET', '/v1/models/mlp/events'],
];

describe('tenants: Authorization header forms on every route', function () {
  this.timeout(120_000);
  let p: TestPlatform;

  before(async () => {
    p = await startPlatform({
      worker: false,
      env: { API_KEYS: `tenant-a:${PLAIN_KEY},tenant-odd:${ODD_KEY}`, ADMIN_API_KEYS: `ops:${ADMIN}` },
    });
  });
  after(async () => {
    await p?.close();
  });

  const expectProblemish = (r: Raw, what: string, allowed: number[]) => {
    expect(allowed, `${what}: ${r.status} ${r.body}`).to.include(r.status);
    if (r.status >= 400) {
      expect(r.headers['content-type'] ?? '', `${what}: problem+json`).to.match(/^application\/problem\+json/);
      const body = JSON.parse(r.body) as { status: number; code: string };
      expect(body.status, what).to.equal(r.status);
    }
    if (r.status === 401) expect(r.headers['www-authenticate'], `${what}: challenge`).to.equal('Bearer realm="infer"');
  };

  it('a key of odd visible-ASCII characters (a colon, %, quotes, backslash) works, in any Bearer case and spacing', async () => {
    for (const h of [`Authorization: Bearer ${ODD_KEY}`, `authorization: bearer ${ODD_KEY}`, `Authorization: Bearer   ${ODD_KEY}   `, `Authorization: Bearer\t${ODD_KEY}`]) {
      const r = await raw(p.baseUrl, 'GET', '/v1/models', [h]);
      expect(r.status, `${h} -> ${r.body}`).to.equal(200);
      const j = await raw(p.baseUrl, 'GET', `/v1/jobs/${JOB}`, [h]);
      expectProblemish(j, h, [404]);
    }
  });

  it('missing, empty, scheme-only, other schemes, unknown keys, and a tenant key as Basic: 401 on every tenant route, never 500', async () => {
    const forms = [
      [],
      ['Authorization:'],
      ['Authorization: Bearer'],
      ['Authorization: Bearer '],
      ['Authorization: Bearer  '],
      [`Authorization: Basic ${Buffer.from(`x:${PLAIN_KEY}`).toString('base64')}`],
      [`Authorization: Token ${PLAIN_KEY}`],
      [`Authorization: Bearer ${PLAIN_KEY} extra`],
      [`Authorization: Bearer ${PLAIN_KEY}\u00e9`],
      [`Authorization: Bearer ${'k'.repeat(8000)}`],
      [`Authorization: Bearer ${ADMIN}`],
    ];
    for (const [method, path, body] of tenantRoutes) {
      for (const headers of forms) {
        // docs/api.md: an admin key also reads GET /v1/models and GET /v1/models/{name}.
        if (path.startsWith('/v1/models') && headers[0]?.includes(ADMIN)) continue;
        const r = await raw(p.baseUrl, method, path, headers, body);
        expectProblemish(r, `${method} ${path} ${headers.join('|').slice(0, 60)}`, [401]);
      }
    }
  });

  it('two Authorization headers: never a 500; a tenant key and an admin key never add up to more than either', async () => {
    const pairs = [
      [`Authorization: Bearer ${PLAIN_KEY}`, `Authorization: Bearer ${ADMIN}`],
      [`Authorization: Bearer ${ADMIN}`, `Authorization: Bearer ${PLAIN_KEY}`],
      [`Authorization: Bearer nope`, `Authorization: Bearer ${PLAIN_KEY}`],
    ];
    for (const [method, path, body] of [...tenantRoutes, ...adminRoutes]) {
      for (const headers of pairs) {
        const r = await raw(p.baseUrl, method, path, headers, body);
        expect(r.status, `${method} ${path} ${headers.join('|')}: ${r.body}`).to.not.equal(500);
        if (r.status >= 400) expect(r.headers['content-type'] ?? '', `${method} ${path}`).to.match(/^application\/problem\+json/);
      }
    }
  });

  it('a tenant key on every admin route is 403 forbidden, an unknown key 401, with the admin key never a 401/403', async () => {
    for (const [method, path, body] of adminRoutes) {
      for (const key of [PLAIN_KEY, ODD_KEY]) {
        expectProblemish(await raw(p.baseUrl, method, path, [`Authorization: Bearer ${key}`], body), `${method} ${path} tenant`, [403]);
      }
      expectProblemish(await raw(p.baseUrl, method, path, ['Authorization: Bearer unknown-key'], body), `${method} ${path} unknown`, [401]);
      expectProblemish(await raw(p.baseUrl, method, path, [], body), `${method} ${path} none`, [401]);
      const r = await raw(p.baseUrl, method, path, [`Authorization: bearer ${ADMIN}`], body);
      expect([401, 403, 500], `${method} ${path} admin: ${r.status} ${r.body}`).to.not.include(r.status);
    }
  });

  it('the queue dashboard: a tenant key as Bearer or Basic is 403, unknown 401 (Basic challenge), never 500', async () => {
    for (const key of [PLAIN_KEY, ODD_KEY]) {
      for (const h of [`Authorization: Bearer ${key}`, `Authorization: Basic ${Buffer.from(`u:${key}`).toString('base64')}`]) {
        const r = await raw(p.baseUrl, 'GET', '/admin/queues/api/queues', [h]);
        expect(r.status, `${h}: ${r.body}`).to.equal(403);
      }
    }
    for (const h of ['Authorization: Basic !!!', 'Authorization: Basic ', `Authorization: Basic ${Buffer.from('nocolon').toString('base64')}`, 'Authorization: Bearer']) {
      const r = await raw(p.baseUrl, 'GET', '/admin/queues/api/queues', [h]);
      expect(r.status, `${h}: ${r.body}`).to.equal(401);
      expect(r.headers['www-authenticate'] ?? '').to.match(/^Basic /);
    }
    const ok = await raw(p.baseUrl, 'GET', '/admin/queues/api/queues', [`Authorization: Basic ${Buffer.from(`ops:${ADMIN}`).toString('base64')}`]);
    expect(ok.status).to.equal(200);
  });

  it('odd ids on every id route (escapes, NUL, hash-tag braces, unicode, 5000 chars): a 4xx problem, never 500', async () => {
    const ids = ['%00', '%7Bx%7D', '%7B%7D', '..%2F..', '%E2%82%AC', 'a'.repeat(5000), '%20', 'msg_', '0', '-', '_'.repeat(30), 'aaaaaaaa', '%25', 'x%0Ay'];
    const templates = tenantRoutes.filter(([, path]) => path.includes(JOB) || path.includes(BATCH) || path.includes(EVENT));
    for (const id of ids) {
      for (const [method, path, body] of templates) {
        const p2 = path.replace(JOB, id).replace(BATCH, id).replace(EVENT, id);
        const r = await raw(p.baseUrl, method, p2, [`Authorization: Bearer ${PLAIN_KEY}`], body);
        expect(r.status, `${method} ${p2.slice(0, 80)}: ${r.body.slice(0, 200)}`).to.be.within(400, 499);
      }
      const q = await raw(p.baseUrl, 'GET', `/v1/batches?after=${id}`, [`Authorization: Bearer ${PLAIN_KEY}`]);
      expect(q.status, `after=${id.slice(0, 40)}: ${q.body.slice(0, 200)}`).to.be.within(400, 499);
    }
  });
});
