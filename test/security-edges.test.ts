import zlib from 'node:zlib';
import { expect } from 'chai';
import { newJobId, queueTag, type Batch, type Job } from '@infer/contract';
import type { Problem } from '@infer/errors';
import { deliver, guardedLookup, isForbiddenAddress } from '@infer/webhooks';
import { mlpFeatures } from './helpers/batches.js';
import { expectProblem, expectRetryAfter, postJob } from './helpers/jobs.js';
import { OTHER_TENANT_KEY, TEST_KEY, startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * The public HTTP surface as a hostile tenant probes it: behaviours no other test pins
 * down. Each `it` says which documented rule it checks (docs/api.md unless said otherwise).
 */

const features = mlpFeatures(0);
const ADMIN = 'security-edges-admin-key';

/** Two problems equal but for the id each quotes: nothing tells the caller which id exists. */
function expectSameProblem(theirs: Problem, never: Problem, theirId: string, neverId: string, what: string): void {
  expect({ ...theirs, detail: theirs.detail.replaceAll(theirId, '<id>') }, what).to.deep.equal({ ...never, detail: never.detail.replaceAll(neverId, '<id>') });
}

describe('security: another tenant’s pending jobs, batches and deliveries leak nothing', function () {
  this.timeout(60_000);
  let p: TestPlatform;

  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p?.close();
  });

  // "A tenant sees only its own: another tenant's job, batch or delivery id answers 404 with the same
  // code and body as an id that never existed". The existing tests do this for ended jobs; a queued
  // job is read from its envelope instead of its record, and a long poll on it must not be held.
  it('a queued job of tenant A: GET, long poll, cancel and webhook_deliveries by tenant B are 404 like an unknown id, at once', async () => {
    const { job } = await postJob(p, { model: 'mlp', version: 2, input: { features } });
    expect(job.status).to.equal('queued');
    const never = newJobId(queueTag('mlp', '2'));
    const cases: Array<[string, RequestInit]> = [
      ['', {}],
      ['', { headers: { prefer: 'wait=5' } }],
      ['', { method: 'HEAD' }],
      ['/cancel', { method: 'POST' }],
      ['/webhook_deliveries', {}],
    ];
    for (const [suffix, init] of cases) {
      const started = performance.now();
      const theirsRes = await p.api(`/v1/jobs/${job.id}${suffix}`, { ...init, key: OTHER_TENANT_KEY });
      const neverRes = await p.api(`/v1/jobs/${never}${suffix}`, { ...init, key: OTHER_TENANT_KEY });
      const what = `${init.method ?? 'GET'} …${suffix} ${JSON.stringify(init.headers ?? {})}`;
      expect(performance.now() - started, `${what}: answered without waiting`).to.be.below(3000);
      expect(theirsRes.headers.get('preference-applied'), what).to.equal(null);
      if (init.method === 'HEAD') {
        expect([theirsRes.status, neverRes.status], what).to.deep.equal([404, 404]);
        expect(theirsRes.headers.get('content-length'), what).to.equal(neverRes.headers.get('content-length'));
        continue;
      }
      const theirs = await expectProblem(theirsRes, 404, 'job_not_found');
      expectSameProblem(theirs, await expectProblem(neverRes, 404, 'job_not_found'), job.id, never, what);
    }
    // No waiter is left behind by the refused long poll, and A's job is untouched.
    await waitUntil(() => p.gateway.waiters.size === 0, 5000, 'no waiters left');
    expect(((await (await p.api(`/v1/jobs/${job.id}`)).json()) as Job).status).to.equal('queued');
  });

  // "GET /v1/batches … an `after` that names no batch of the tenant is 400 invalid_input": the cursor
  // must not tell another tenant's batch id from one that never existed.
  it('GET /v1/batches?after=<another tenant’s batch> is the same 400 as an unknown id', async () => {
    const res = await p.api('/v1/batches', { method: 'POST', body: JSON.stringify({ model: 'mlp', items: [{ input: { features } }] }) });
    expect(res.status).to.equal(202);
    const batch = (await res.json()) as Batch;
    const never = '00000000-0000-4000-8000-000000000000';
    const theirs = await expectProblem(await p.api(`/v1/batches?after=${batch.id}`, { key: OTHER_TENANT_KEY }), 400, 'invalid_input');
    const unknown = await expectProblem(await p.api(`/v1/batches?after=${never}`, { key: OTHER_TENANT_KEY }), 400, 'invalid_input');
    expectSameProblem(theirs, unknown, batch.id, never, 'after');
    // The same cursor works for its owner.
    expect((await p.api(`/v1/batches?after=${batch.id}`)).status).to.equal(200);
    await p.api(`/v1/batches/${batch.id}/cancel`, { method: 'POST' });
  });

  // "POST /v1/webhook_deliveries/{event_id}/resend … 409 conflict while pending … another tenant's
  // event is a 404": the 404 must come before the 409, or the 409 says the event exists.
  it('resending another tenant’s PENDING delivery is 404 not_found, exactly as an unknown event; the owner gets 409', async () => {
    const { job } = await postJob(p, { model: 'mlp', version: 2, input: { features }, webhook: 'https://hooks.example.com/infer' });
    expect((await p.api(`/v1/jobs/${job.id}/cancel`, { method: 'POST' })).status).to.equal(200);
    // The cancel queues the job's job.completed; no worker runs here, so it stays pending.
    const delivery = await waitUntil(async () => {
      const list = (await (await p.api(`/v1/jobs/${job.id}/webhook_deliveries`)).json()) as { data: Array<{ id: string; state: string }> };
      return list.data[0];
    }, 10_000, 'the job.completed delivery');
    expect(delivery.state).to.equal('pending');
    const never = `msg_${'0'.repeat(32)}`;
    for (const [suffix, method] of [['/resend', 'POST'], ['', 'GET']] as const) {
      const theirs = await expectProblem(await p.api(`/v1/webhook_deliveries/${delivery.id}${suffix}`, { method, key: OTHER_TENANT_KEY }), 404, 'not_found');
      const unknown = await expectProblem(await p.api(`/v1/webhook_deliveries/${never}${suffix}`, { method, key: OTHER_TENANT_KEY }), 404, 'not_found');
      expectSameProblem(theirs, unknown, delivery.id, never, `${method} …${suffix}`);
    }
    await expectProblem(await p.api(`/v1/webhook_deliveries/${delivery.id}/resend`, { method: 'POST' }), 409, 'conflict');
  });

  // "the webhook signing secret [is] per tenant … Sent with Cache-Control: no-store."
  it('GET /v1/webhooks/secret: one whsec_ secret per tenant, never cached', async () => {
    const read = async (key: string) => {
      const res = await p.api('/v1/webhooks/secret', { key });
      expect(res.status).to.equal(200);
      expect(res.headers.get('cache-control')).to.equal('no-store');
      return ((await res.json()) as { secret: string }).secret;
    };
    const [a, b] = [await read(TEST_KEY), await read(OTHER_TENANT_KEY)];
    expect(a).to.match(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(b).to.match(/^whsec_/);
    expect(a).to.not.equal(b);
    await expectProblem(await p.api('/v1/webhooks/secret', { key: null }), 401, 'unauthorized');
  });
});

describe('security: keys, admin surfaces and echoed values', function () {
  this.timeout(60_000);
  let p: TestPlatform;

  before(async () => {
    p = await startPlatform({ worker: false, env: { ADMIN_API_KEYS: `ops:${ADMIN}` } });
  });
  after(async () => {
    await p?.close();
  });

  // "Authorization: Bearer <key> (the scheme name is case-insensitive)": the KEY is not; a key is
  // looked up by its digest, so no variant of it is accepted.
  it('accepts the Bearer scheme in any case, and no variant of the key itself', async () => {
    for (const authorization of [`Bearer ${TEST_KEY}`, `bearer ${TEST_KEY}`, `BEARER ${TEST_KEY}`, `BeArEr ${TEST_KEY}`]) {
      expect((await p.api('/v1/models', { key: null, headers: { authorization } })).status, authorization).to.equal(200);
    }
    for (const authorization of [
      `Bearer ${TEST_KEY.toUpperCase()}`,
      `Bearer ${TEST_KEY}x`,
      `Bearer x${TEST_KEY}`,
      `Bearer ${TEST_KEY.slice(0, -1)}`,
      `Bearer ${TEST_KEY} ${TEST_KEY}`,
      `Bearer ${TEST_KEY},${TEST_KEY}`,
      `Bearer "${TEST_KEY}"`,
      `Token ${TEST_KEY}`,
      `Bearer${TEST_KEY}`,
      TEST_KEY,
      `Basic ${Buffer.from(`${TEST_KEY}:`).toString('base64')}`,
      `Basic ${Buffer.from(`x:${TEST_KEY}`).toString('base64')}`,
    ]) {
      await expectProblem(await p.api('/v1/models', { key: null, headers: { authorization } }), 401, 'unauthorized');
      await expectProblem(await p.api('/v1/jobs/aaaaaaaaAAAAAAAAAAAAAAAAAAAAAA', { key: null, headers: { authorization } }), 401, 'unauthorized');
    }
  });

  // "/admin/queues serves the queue dashboard … to an admin key": Express matches mount paths without
  // regard to case or a trailing slash; every spelling that reaches bull-board must pass the admin check.
  it('the dashboard under other spellings of its path still refuses a tenant (403) and no key (401)', async () => {
    for (const path of ['/ADMIN/QUEUES', '/Admin/Queues/api/queues', '/admin/queues/', '/admin/queues/api/queues/', '/admin/QUEUES/api/redis/stats']) {
      const tenant = await fetch(p.baseUrl + path, { headers: { authorization: `Bearer ${TEST_KEY}` } });
      expect(tenant.status, `${path} with a tenant key`).to.equal(403);
      await tenant.arrayBuffer();
      const none = await fetch(p.baseUrl + path);
      expect(none.status, `${path} without a key`).to.equal(401);
      await none.arrayBuffer();
      const head = await fetch(p.baseUrl + path, { method: 'HEAD' });
      expect(head.status, `HEAD ${path}`).to.equal(401);
    }
    // A path bull-board is not mounted at never reaches it.
    for (const path of ['//admin/queues/api/queues', '/admin/%71ueues/api/queues', '/admin/queues%2fapi/queues']) {
      const res = await fetch(p.baseUrl + path, { headers: { authorization: `Bearer ${TEST_KEY}` } });
      expect(res.status, path).to.be.oneOf([401, 403, 404]);
      expect(await res.text(), path).to.not.include('"queues"');
    }
  });

  it('admin routes under other spellings of their path refuse a tenant key (403), and change nothing', async () => {
    const asTenant = { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' };
    for (const [method, path, body] of [
      ['PUT', '/V1/MODELS/mlp/routing', '{"weights":{"1":100}}'],
      ['PUT', '/v1/models/mlp/routing/', '{"weights":{"1":100}}'],
      ['POST', '/v1/Models/mlp/versions/1/unload', undefined],
      ['POST', '/v1/models/mlp/rollouts/', '{"version":"1","steps":[100],"step_seconds":1}'],
      ['GET', '/V1/models/mlp/events', undefined],
      ['HEAD', '/v1/models/mlp/events', undefined],
    ] as Array<[string, string, string | undefined]>) {
      const res = await fetch(p.baseUrl + path, { method, headers: asTenant, ...(body ? { body } : {}) });
      expect(res.status, `${method} ${path}`).to.equal(403);
      await res.arrayBuffer();
    }
    const model = (await (await p.api('/v1/models/mlp')).json()) as { routing_source: string; versions_detail: Array<{ state: string }> };
    expect(model.routing_source).to.equal('default');
    expect(model.versions_detail.every((d) => d.state !== 'draining')).to.equal(true);
    const events = (await (await fetch(`${p.baseUrl}/v1/models/mlp/events`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { data: unknown[] };
    expect(events.data).to.deep.equal([]);
  });

  // "A body may be compressed, on every route that takes one … Size limits count the decompressed
  // bytes", and the routing body's limit is 64 KiB: a gzip bomb stops at the limit there too.
  it('a gzip bomb on the admin routing body is 413 at its 64 KiB limit', async () => {
    const bomb = zlib.gzipSync(Buffer.alloc(64 * 1024 * 1024, 0x20));
    expect(bomb.length).to.be.below(100 * 1024);
    const started = performance.now();
    const res = await fetch(`${p.baseUrl}/v1/models/mlp/routing`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: bomb,
    });
    await expectProblem(res, 413, 'payload_too_large');
    expect(performance.now() - started, 'stopped at the limit, not after inflating 64 MB').to.be.below(5000);
  });

  // Nothing a client sends comes back in a header: a CR LF in the path only ever appears JSON-escaped
  // in the problem's detail, and no header is added.
  it('CR LF in a path or an id is never echoed into response headers', async () => {
    for (const path of ['/v1/nope%0d%0aSet-Cookie:%20a=b', '/v1/jobs/x%0d%0aSet-Cookie:%20a=b', '/v1/batches/x%0D%0ALocation:%20//evil', '/v1/webhook_deliveries/%0d%0aX-Injected:%201']) {
      const res = await p.api(path);
      expect(res.status, path).to.be.oneOf([400, 404]);
      expect(res.headers.get('set-cookie'), path).to.equal(null);
      expect(res.headers.get('location'), path).to.equal(null);
      expect(res.headers.get('x-injected'), path).to.equal(null);
      const text = await res.text();
      expect(text, `${path}: raw CR or LF in the body`).to.not.match(/[\r\n]/);
      expect((JSON.parse(text) as Problem).status, path).to.equal(res.status);
    }
  });
});

describe('security: the rate limit counts every method and route of a key', function () {
  this.timeout(60_000);
  const LIMIT = 5;
  let p: TestPlatform;

  const ROUTES = [
    ['HEAD of a job', 'HEAD', '/v1/jobs/aaaaaaaaAAAAAAAAAAAAAAAAAAAAAA'],
    ['OPTIONS', 'OPTIONS', '/v1/batches'],
    ['an unknown /v1 route', 'GET', '/v1/nope'],
    ['the webhook secret', 'GET', '/v1/webhooks/secret'],
    ['a webhook delivery', 'GET', '/v1/webhook_deliveries/msg_0'],
  ] as const;
  // A key of its own per route, so that no burst spends another's budget.
  const keyOf = (i: number) => `security-edges-rl-key-${i}`;

  before(async () => {
    const keys = [`tenant-a:${TEST_KEY}`, `tenant-b:${OTHER_TENANT_KEY}`, ...ROUTES.map((_, i) => `rl${i}:${keyOf(i)}`)].join(',');
    p = await startPlatform({ worker: false, env: { RATE_LIMIT_PER_SECOND: String(LIMIT), API_KEYS: keys } });
  });
  after(async () => {
    await p?.close();
  });

  // "At most RATE_LIMIT_PER_SECOND requests … per API key in each one-second window": HEAD, OPTIONS and
  // routes that do not exist are requests too. 6 × LIMIT at once span at most two windows, so at least
  // one of them is over the limit, whichever way the burst falls.
  ROUTES.forEach(([what, method, path], i) => {
    it(`${what} counts against the key: past the limit it is 429 with Retry-After`, async () => {
      const answers = await Promise.all(Array.from({ length: 6 * LIMIT }, () => p.api(path, { method, key: keyOf(i) })));
      const limited = answers.filter((r) => r.status === 429);
      expect(limited.length, `statuses ${answers.map((r) => r.status).join(',')}`).to.be.greaterThan(0);
      expectRetryAfter(limited[0]!);
      // Only 429s past the limit, and the route's own answer below it.
      expect(answers.every((r) => r.status === 429 || r.status === 404 || r.status === 200), `statuses ${answers.map((r) => r.status).join(',')}`).to.equal(true);
      await Promise.all(answers.map((r) => r.arrayBuffer()));
    });
  });

  it('without a key it is 401, never 429, however many come', async () => {
    const answers = await Promise.all(Array.from({ length: 6 * LIMIT }, () => p.api('/v1/models', { key: null })));
    expect(new Set(answers.map((r) => r.status))).to.deep.equal(new Set([401]));
    await Promise.all(answers.map((r) => r.arrayBuffer()));
  });
});

describe('security: webhook URL forms that reach private addresses are refused everywhere', function () {
  this.timeout(60_000);
  let p: TestPlatform;

  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p?.close();
  });

  // docs/api.md "Which URLs are allowed": forms the existing lists do not try.
  const BAD = [
    'http://0x7f.1/hook', // hex
    'http://017700000001/hook', // octal
    'http://0177.0.0.1/hook',
    'http://127.0.0.1./hook', // trailing dot on an address
    'http://[::ffff:7f00:1]/hook', // IPv4-mapped, hex form
    'http://[0:0:0:0:0:ffff:a9fe:a9fe]/hook', // mapped 169.254.169.254, long form
    'http://[::ffff:10.0.0.1]:8443/hook',
    'http://[64:ff9b::a00:1]/hook', // NAT64 of 10.0.0.1
    'http://[64:ff9b:1::a00:1]/hook', // local-use NAT64 (RFC 8215)
    'http://[::ffff:0:a00:1]/hook', // IPv4-translated 10.0.0.1 (SIIT)
    'http://[::]/hook',
    'http://[fc00::1]/hook',
    'http://[ff02::1]/hook',
    'http://100.64.0.1/hook', // CGNAT
    'http://198.18.0.1/hook',
    'http://255.255.255.255/hook',
    'http://example.com@127.0.0.1/hook', // userinfo before the real host
    'http://user:pass@[::1]:80/hook',
    'http://127。0。0。1/hook', // ideographic full stops
    'http://LOCALHOST../hook',
    'http://api.LocalHost./hook',
    'http://localhost%2e/hook',
    'http://%6cocalhost/hook',
    'https://intranet./hook', // single label with a trailing dot
  ];

  it('POST /v1/jobs, a JSON batch and an NDJSON upload all answer 422 webhook_url_not_allowed', async () => {
    for (const webhook of BAD) {
      await expectProblem(await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features }, webhook }) }), 422, 'webhook_url_not_allowed');
      await expectProblem(
        await p.api('/v1/batches', { method: 'POST', body: JSON.stringify({ model: 'mlp', items: [{ input: { features } }], webhook }) }),
        422,
        'webhook_url_not_allowed',
      );
      await expectProblem(
        await p.api(`/v1/batches?model=mlp&webhook=${encodeURIComponent(webhook)}`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-ndjson' },
          body: `${JSON.stringify({ input: { features } })}\n`,
        }),
        422,
        'webhook_url_not_allowed',
      );
    }
    // Nothing was created: the tenant has no batch.
    expect(((await (await p.api('/v1/batches')).json()) as { data: unknown[] }).data).to.deep.equal([]);
  });

  it('at delivery: a name resolving to any IPv4-mapped or IPv6 private address is refused, and a literal one too, before any connection', async () => {
    for (const address of ['::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:a9fe:a9fe', '0:0:0:0:0:ffff:a00:1', 'fd12::1', 'fe80::1', '::', '100.64.1.1']) {
      expect(isForbiddenAddress(address), address).to.equal(true);
      const lookup = guardedLookup({ allowPrivate: false, resolve: async () => [{ address: '93.184.216.34', family: 4 }, { address, family: address.includes(':') ? 6 : 4 }] });
      const err = await new Promise<Error | null>((resolve) => lookup('hooks.example.test', { all: true }, (e) => resolve(e)));
      expect(err?.message, address).to.match(/resolves to .* refused/);
    }
    // A literal address in the URL is refused before connecting, in every form the URL parser accepts.
    for (const url of ['http://[::ffff:7f00:1]:1/x', 'http://0x7f.1:1/x', 'http://[::ffff:169.254.169.254]/x']) {
      const outcome = await deliver({ url, headers: {}, body: '{}' }, { allowPrivate: false, timeoutMs: 2000 });
      expect(outcome.ok, url).to.equal(false);
      expect(outcome.final, url).to.equal(true);
      expect(outcome.error, url).to.match(/refused/);
    }
  });
});
