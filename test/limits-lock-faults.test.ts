import net from 'node:net';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, keys, queueMember } from '@infer/contract';
import { mlpFeatures } from './helpers/batches.js';
import { OTHER_TENANT_KEY, startPlatform, TEST_KEY, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { OwnRedis } from './helpers/redis-server.js';
import { waitUntil } from './helpers/wait.js';

/**
 * The limits lock (apps/gateway/src/jobs/limits-lock.ts) as a client sees it. docs/api.md
 * POST /v1/jobs: "Should a gateway die holding the lock, the others wait for it to lapse (2 s); one that
 * cannot have it within 5 s answers 503 unavailable (Retry-After: 1)." Every answer must be 202, 429
 * quota_exceeded, 503 queue_full or 503 unavailable, with Retry-After; no request hangs.
 */

const post = (base: string, version: string, x: number) =>
  fetch(`${base}/v1/jobs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'mlp', version, input: { features: mlpFeatures(x) } }),
  });

interface Answer {
  status: number;
  code?: string;
  retryAfter: string | null;
  ms: number;
}

async function timed(res: Promise<Response>, from = performance.now()): Promise<Answer> {
  const r = await res;
  const body = (await r.json().catch(() => ({}))) as { code?: string };
  return { status: r.status, code: body.code, retryAfter: r.headers.get('retry-after'), ms: performance.now() - from };
}

/** Some gateway's envelope connection last sent a SET (LimitsLock.acquire's SET NX PX). */
async function pollingForLock(url: string): Promise<boolean> {
  const r = new Redis(url);
  try {
    const list = (await r.client('LIST')) as string;
    return list.split('\n').some((line) => line.includes('name=infer-gateway:envelopes') && / cmd=set /.test(line));
  } finally {
    r.disconnect();
  }
}

function expectDocumented(a: Answer): void {
  const ok =
    a.status === 202 ||
    (a.status === 429 && a.code === 'quota_exceeded' && a.retryAfter !== null) ||
    (a.status === 503 && (a.code === 'queue_full' || a.code === 'unavailable') && a.retryAfter !== null);
  expect(ok, JSON.stringify(a)).to.equal(true);
}

describe('limits lock: Redis stops answering writes while submits wait for the lock', function () {
  this.timeout(60_000);
  let redis: OwnRedis;
  let p: TestPlatform;
  let admin: Redis;

  before(async () => {
    redis = await OwnRedis.start();
    // A limit of 2, reached by the first two jobs: from then on every envelope needs the lock to make room.
    p = await startPlatform({ redisUrl: redis.url, worker: false, env: { MAX_QUEUE_DEPTH: '2' } });
    admin = new Redis(redis.url);
  });
  after(async () => {
    await admin?.client('UNPAUSE').catch(() => undefined);
    admin?.disconnect();
    await p?.close();
    await redis?.stop();
  });

  it('each submit waiting for the lock is answered within about 5 s (not 5 s per envelope queued ahead of it in the gateway)', async () => {
    expect((await post(p.baseUrl, '1', 0)).status).to.equal(202);
    expect((await post(p.baseUrl, '2', 1)).status).to.equal(202);
    // From here every envelope is past its queue's allowance: it takes the lock. Redis holds every write for 12 s
    // (a stall: failover, a slow disk with appendfsync always, a long script); reads go on.
    await admin.client('PAUSE', 12_000, 'WRITE');
    const from = performance.now();
    // Two envelopes (one per version), queued one behind the other for the lock inside this gateway.
    const answers = await Promise.all([timed(post(p.baseUrl, '1', 2), from), timed(post(p.baseUrl, '2', 3), from)]);
    await admin.client('UNPAUSE');
    for (const a of answers) expectDocumented(a);
    const slowest = Math.max(...answers.map((a) => a.ms));
    expect(slowest, `answers after ${answers.map((a) => a.ms.toFixed(0)).join(' and ')} ms: ${JSON.stringify(answers)}`).to.be.below(7000);
  });

  it('a lock request that timed out in a stall and ran later leaves no lock behind that nobody holds', async () => {
    // Both versions are at their allowance already (previous test, or now).
    for (const v of ['1', '2']) await post(p.baseUrl, v, 5);
    await admin.client('PAUSE', 5_600, 'WRITE');
    // Its SET NX PX times out (commandTimeout 5 s): 503. Redis runs that SET when the stall ends.
    const stalled = await timed(post(p.baseUrl, '1', 6));
    expectDocumented(stalled);
    await waitUntil(async () => (await admin.set(`${p.prefix}:probe`, '1')) === 'OK', 5000, 'the stall to end');
    const from = performance.now();
    const next = await timed(post(p.baseUrl, '2', 7), from);
    expectDocumented(next);
    const held = await admin.get(keys(p.prefix).limitsLock);
    expect(next.ms, `the next submit near the limit waited ${next.ms.toFixed(0)} ms (lock now: ${held})`).to.be.below(1000);
  });
});

describe('limits lock: Redis restarted while submits wait for the lock', function () {
  this.timeout(60_000);
  let redis: OwnRedis;
  let p: TestPlatform;

  before(async () => {
    redis = await OwnRedis.start();
    // A limit of 2, reached by the two jobs below: the next submits need the lock to make room.
    p = await startPlatform({ redisUrl: redis.url, worker: false, env: { MAX_QUEUE_DEPTH: '2' } });
  });
  after(async () => {
    await p?.close();
    await redis?.stop();
  });

  it('the waiting submits are answered 503 unavailable with Retry-After, and once Redis is back submits are taken again', async () => {
    expect((await post(p.baseUrl, '1', 0)).status).to.equal(202);
    expect((await post(p.baseUrl, '2', 1)).status).to.equal(202);
    const admin = new Redis(redis.url);
    try {
      // A gateway that died holding the lock: the submits below wait for it.
      await admin.set(keys(p.prefix).limitsLock, 'a-dead-gateway', 'PX', 4000);
      const member = queueMember('mlp', '1');
      expect(await admin.sismember(keys(p.prefix).interactiveQueues, member)).to.equal(1);
    } finally {
      admin.disconnect();
    }
    const from = performance.now();
    const waiting = [timed(post(p.baseUrl, '1', 2), from), timed(post(p.baseUrl, '2', 3), from)];
    // The gateway has picked the requests up: it is polling for the lock (SET NX) the dead gateway holds.
    await waitUntil(() => pollingForLock(redis.url), 3000, 'the gateway to poll for the lock');
    await redis.stop();
    await redis.start();
    const answers = await Promise.all(waiting);
    for (const a of answers) expectDocumented(a);
    for (const a of answers) expect(a.ms, JSON.stringify(a)).to.be.below(7000);
    // Redis is back, empty (no persistence): the lock is gone with it.
    const again = await waitUntil(async () => {
      const a = await timed(post(p.baseUrl, '1', 4));
      return a.status === 202 ? a : undefined;
    }, 10_000, 'a submit to be taken again');
    expect(again.ms).to.be.below(1000);
  });
});

describe('limits lock: a gateway closed while submits wait for the lock', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let admin: Redis;

  before(async () => {
    p = await startPlatform({ worker: false, env: { MAX_QUEUE_DEPTH: '6' } });
    admin = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    admin?.disconnect();
    await p?.close();
  });

  it('answers every waiting submit (202 or a documented refusal), and close() ends', async () => {
    expect((await post(p.baseUrl, '1', 0)).status).to.equal(202);
    expect((await post(p.baseUrl, '2', 1)).status).to.equal(202);
    await admin.set(keys(p.prefix).limitsLock, 'a-dead-gateway', 'PX', 1500);
    // Six requests pipelined on one connection, in one write: the gateway reads them all at once.
    const url = new URL(p.baseUrl);
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(Number(url.port), url.hostname, () => resolve(s));
      s.once('error', reject);
    });
    let text = '';
    const ended = new Promise<void>((resolve) => {
      socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
      socket.once('close', () => resolve());
      socket.once('error', () => resolve());
    });
    let requests = '';
    for (let i = 0; i < 6; i++) {
      const body = JSON.stringify({ model: 'mlp', version: i % 2 ? '1' : '2', input: { features: mlpFeatures(10 + i) } });
      requests +=
        `POST /v1/jobs HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer ${TEST_KEY}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: ${i === 5 ? 'close' : 'keep-alive'}\r\n\r\n${body}`;
    }
    socket.write(requests);
    // The requests reached the gateway: it is polling for the lock.
    await waitUntil(() => pollingForLock(TEST_REDIS_URL), 3000, 'the gateway to poll for the lock');
    const closing = p.gateway.close();
    await ended;
    await closing;
    const answers: Answer[] = text
      .split(/(?=HTTP\/1\.1 \d{3} )/)
      .filter((r) => r.startsWith('HTTP/1.1'))
      .map((r) => {
        const [head, body = ''] = r.split('\r\n\r\n');
        let code: string | undefined;
        try {
          code = (JSON.parse(body) as { code?: string }).code;
        } catch {
          code = undefined;
        }
        return { status: Number(head!.slice(9, 12)), code, retryAfter: /\r\nretry-after: *(\S+)/i.exec(head!)?.[1] ?? null, ms: 0 };
      });
    expect(answers.length, `one answer per request: ${text}`).to.equal(6);
    for (const a of answers) expectDocumented(a);
    const k1 = interactiveKeys(p.prefix, 'mlp', '1');
    const k2 = interactiveKeys(p.prefix, 'mlp', '2');
    const queued = Number((await admin.get(k1.queued)) ?? 0) + Number((await admin.get(k2.queued)) ?? 0);
    const indexed = (await admin.hlen(k1.index)) + (await admin.hlen(k2.index));
    expect(queued).to.equal(indexed);
    expect(queued).to.equal(2 + answers.filter((a) => a.status === 202).length);
    expect(queued).to.be.at.most(6);
  });
});

describe('limits lock: a lock another gateway keeps past 5 s', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let admin: Redis;

  before(async () => {
    // A cap of 9 a tenant: 8 queued, 5 more cannot fit the tenant's allowance (at most 9) without the lock.
    p = await startPlatform({ worker: false, env: { TENANT_MAX_QUEUED: '9' } });
    admin = new Redis(TEST_REDIS_URL);
  });
  after(async () => {
    admin?.disconnect();
    await p?.close();
  });

  it('a submit past its allowance answers 503 unavailable with Retry-After: 1 after about 5 s, lets go of its Idempotency-Key, and one within its allowance meanwhile does not wait', async () => {
    const fill = await Promise.all(Array.from({ length: 8 }, (_, i) => timed(post(p.baseUrl, '1', i))));
    expect(fill.map((a) => a.status)).to.deep.equal(Array(8).fill(202));
    // The other tenant's first job takes the lock for its allowance in version 2's queue.
    const warm = await fetch(`${p.baseUrl}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OTHER_TENANT_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mlp', version: '2', input: { features: mlpFeatures(98) } }),
    });
    expect(warm.status).to.equal(202);
    await admin.set(keys(p.prefix).limitsLock, 'another-gateway', 'PX', 6500);
    const from = performance.now();
    // 8 + 5 > 9: past the tenant's allowance.
    const past = Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        timed(
          fetch(`${p.baseUrl}/v1/jobs`, {
            method: 'POST',
            headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', 'idempotency-key': `k-${i}` },
            body: JSON.stringify({ model: 'mlp', version: '1', input: { features: mlpFeatures(50 + i) } }),
          }),
          from,
        ),
      ),
    );
    await waitUntil(() => pollingForLock(TEST_REDIS_URL), 3000, 'the gateway to poll for the lock');
    // The other tenant, within its allowance: no lock.
    const within = await timed(
      fetch(`${p.baseUrl}/v1/jobs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${OTHER_TENANT_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'mlp', version: '2', input: { features: mlpFeatures(99) } }),
      }),
    );
    expect(within.status).to.equal(202);
    expect(within.ms, 'within its allowance: no wait for the lock').to.be.below(1000);
    const answers = await past;
    for (const a of answers) {
      expect(a.status, JSON.stringify(a)).to.equal(503);
      expect(a.code).to.equal('unavailable');
      expect(a.retryAfter).to.equal('1');
      expect(a.ms).to.be.within(4500, 6500);
    }
    // Nothing was written: the keys were let go, and a retry once the lock is free is a new job.
    await waitUntil(async () => (await admin.get(keys(p.prefix).limitsLock)) === null, 3000, 'the lock to lapse');
    const retry = await timed(
      fetch(`${p.baseUrl}/v1/jobs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', 'idempotency-key': 'k-0' },
        body: JSON.stringify({ model: 'mlp', version: '1', input: { features: mlpFeatures(50) } }),
      }),
    );
    expect(retry.status).to.equal(202);
  });
});
