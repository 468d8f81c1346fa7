import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { expect } from 'chai';
import express from 'express';
import { Redis } from 'ioredis';
import { apiKeyDigest } from '@infer/config';
import { silentLogger } from '@infer/logger';
import { requireApiKey } from '../apps/gateway/src/http/auth.js';
import { problemMiddleware } from '../apps/gateway/src/http/problem-middleware.js';
import { rateLimitPerKey, SharedRateLimiter, type SharedRateLimiterOptions } from '../apps/gateway/src/http/rate-limit.js';
import { expectProblem, expectRetryAfter } from './helpers/jobs.js';
import { freePort } from './helpers/redis-server.js';
// Not ./helpers/platform.js: that loads the whole gateway and worker, and these tests need one module of it.
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './helpers/redis-keys.js';
import { elapse, waitUntil } from './helpers/wait.js';

const KEY = 'rl-test-key-a';
const OTHER_KEY = 'rl-test-key-b';
/** 100 ms into an epoch second, so a test has the whole window ahead of it. */
const WINDOW_START_MS = 1_800_000_000_000;

/** A clock a test moves by hand. */
function manualClock(at = WINDOW_START_MS + 100) {
  return {
    at,
    now(): number {
      return this.at;
    },
  };
}

/** What a client sent: every command's name, and the round trips (a pipeline is one). */
interface Sent {
  commands: string[];
  roundTrips: number;
}

/** Count what `redis` sends, without MONITOR (other suites share this Redis). */
function counting(redis: Redis): Sent {
  const sent: Sent = { commands: [], roundTrips: 0 };
  const pipelines = new WeakSet<object>();
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = ((command, stream) => {
    sent.commands.push(command.name);
    const pipeline = stream as { isPipeline?: boolean } | undefined;
    if (!pipeline?.isPipeline) sent.roundTrips++;
    else if (!pipelines.has(pipeline)) {
      pipelines.add(pipeline);
      sent.roundTrips++;
    }
    return send(command, stream);
  }) as Redis['sendCommand'];
  return sent;
}

const consumeTimes = (limiter: SharedRateLimiter, n: number, key = KEY) =>
  Array.from({ length: n }, () => limiter.consume(key));
const allowed = (verdicts: ReturnType<SharedRateLimiter['consume']>[]) => verdicts.filter((v) => v.ok).length;
const bucketOf = (apiKey: string) => createHash('sha256').update(apiKey).digest('base64url').slice(0, 22);

describe('rate limit: SharedRateLimiter', () => {
  let prefix: string;
  let redis: Redis;
  const limiters: SharedRateLimiter[] = [];
  const errors: unknown[] = [];

  function limiter(options: Partial<SharedRateLimiterOptions> = {}): SharedRateLimiter {
    const made = new SharedRateLimiter({ redis, prefix, perSecond: 10, onError: (err) => errors.push(err), ...options });
    limiters.push(made);
    return made;
  }

  beforeEach(async () => {
    prefix = uniquePrefix('rl');
    redis = new Redis(TEST_REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true });
    await redis.connect();
    errors.length = 0;
  });

  afterEach(async () => {
    await Promise.all(limiters.splice(0).map((l) => l.close()));
    redis.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it('allows exactly perSecond in a window, refuses the rest with Retry-After, and allows again in the next window', async () => {
    const clock = manualClock();
    const l = limiter({ now: () => clock.now() });
    const first = consumeTimes(l, 15);
    expect(allowed(first)).to.equal(10);
    expect(first.slice(0, 10).every((v) => v.ok)).to.equal(true);
    for (const v of first.slice(10)) {
      expect(v.ok).to.equal(false);
      if (!v.ok) expect(v.retryAfterSeconds).to.equal(1);
    }
    // Another key has a budget of its own.
    expect(allowed(consumeTimes(l, 3, OTHER_KEY))).to.equal(3);

    await l.flush();
    const window = Math.floor(clock.at / 1000);
    const counter = `${prefix}:ratelimit:${bucketOf(KEY)}:${window}`;
    expect(await redis.get(counter)).to.equal('10');
    expect(await redis.pttl(counter)).to.be.within(1, 3_000);
    const names = await redis.keys(`${prefix}:*`);
    expect(names).to.have.length(2);
    for (const name of names) expect(name).not.to.include(KEY.slice(3)).and.not.to.include(OTHER_KEY.slice(3));

    clock.at += 1_000;
    expect(allowed(consumeTimes(l, 15))).to.equal(10);
    expect(errors).to.deep.equal([]);
  });

  it('two gateways: each hears of the other at its next sync', async () => {
    const clock = manualClock();
    const now = () => clock.now();
    // Hour-long syncMs: only flush() syncs, so the test says when.
    const a = limiter({ now, syncMs: 3_600_000 });
    const b = limiter({ now, syncMs: 3_600_000 });
    expect(allowed(consumeTimes(a, 8))).to.equal(8);
    await a.flush();
    // b has not synced: it knows only its own count.
    expect(allowed(consumeTimes(b, 1))).to.equal(1);
    await b.flush();
    // Now b's total is 9 of 10.
    expect(allowed(consumeTimes(b, 5))).to.equal(1);
    await b.flush();
    // a pushes its next request and hears the window is full.
    expect(allowed(consumeTimes(a, 1))).to.equal(1);
    await a.flush();
    expect(allowed(consumeTimes(a, 5))).to.equal(0);
    // One over: a's last request, accepted before a had heard of b's two.
    expect(await redis.get(`${prefix}:ratelimit:${bucketOf(KEY)}:${Math.floor(clock.at / 1000)}`)).to.equal('11');
  });

  it('two gateways: over a window the combined count stays within the limit plus what was accepted between syncs', async () => {
    const clock = manualClock();
    const now = () => clock.now();
    const perSecond = 50;
    const perRound = 10;
    const a = limiter({ now, perSecond, syncMs: 3_600_000 });
    const b = limiter({ now, perSecond, syncMs: 3_600_000 });
    let total = 0;
    for (let round = 0; round < 10; round++) {
      total += allowed(consumeTimes(a, perRound)) + allowed(consumeTimes(b, perRound));
      await a.flush();
      await b.flush();
      clock.at += 10;
    }
    expect(total).to.be.at.least(perSecond);
    // What one gateway accepted in one round (between syncs) is the most the other had not heard of.
    expect(total).to.be.at.most(perSecond + perRound);
    expect(Number(await redis.get(`${prefix}:ratelimit:${bucketOf(KEY)}:${Math.floor(clock.at / 1000)}`))).to.equal(total);
    expect(allowed(consumeTimes(a, 1)) + allowed(consumeTimes(b, 1))).to.equal(0);
  });

  it('Redis unreachable: decides locally, keeps refusing past the limit, reports, and close() resolves at once', async () => {
    const down = new Redis({ host: '127.0.0.1', port: await freePort(), enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true });
    down.on('error', () => undefined);
    try {
      const clock = manualClock();
      const l = limiter({ redis: down, now: () => clock.now(), syncMs: 5 });
      const verdicts = consumeTimes(l, 15);
      expect(allowed(verdicts)).to.equal(10);
      // The counts are kept and pushed again while the window is current: every try reports.
      await waitUntil(() => errors.length >= 3, 5_000, 'three failed syncs');
      expect(allowed(consumeTimes(l, 5))).to.equal(0);
      const started = Date.now();
      await l.close();
      expect(Date.now() - started).to.be.below(200);
      await l.close();
    } finally {
      down.disconnect();
    }
  });

  it('a sync that hangs (offline queue) is never doubled, and close() gives up on it promptly', async () => {
    const hung = new Redis({ host: '127.0.0.1', port: await freePort(), lazyConnect: true, maxRetriesPerRequest: null });
    hung.on('error', () => undefined);
    const sent = counting(hung);
    try {
      const l = limiter({ redis: hung, syncMs: 1 });
      expect(allowed(consumeTimes(l, 5))).to.equal(5);
      void l.flush();
      expect(allowed(consumeTimes(l, 10))).to.equal(5);
      const started = Date.now();
      await l.close();
      expect(Date.now() - started).to.be.below(1_500);
      expect(sent.roundTrips).to.equal(1);
    } finally {
      hung.disconnect();
    }
  });

  it('costs one round trip per sync, not per request, and nothing while idle', async () => {
    const sent = counting(redis);
    const syncMs = 10;
    // The limiter's clock stays in one window (a count left when a window ends is dropped, not pushed); timers are real.
    const clock = manualClock(WINDOW_START_MS);
    const l = limiter({ perSecond: 1_000_000, syncMs, now: () => clock.now() });
    const keys = ['k1', 'k2', 'k3', 'k4'];
    const started = Date.now();
    // 1,000 requests in 20 bursts of 50 over 4 keys, spread over the window; each burst waits for its sync.
    for (let burst = 0; burst < 20; burst++) {
      const before = sent.roundTrips;
      for (let i = 0; i < 50; i++) expect(l.consume(keys[i % keys.length]!).ok).to.equal(true);
      await waitUntil(() => sent.roundTrips > before, 5_000, 'a sync');
      clock.at += 45;
    }
    const elapsed = Date.now() - started;
    expect(sent.roundTrips).to.equal(20);
    expect(sent.roundTrips).to.be.at.most(Math.ceil(elapsed / syncMs) + 1);
    // One script call per key and sync (plus, at most, the first call's script load).
    expect(sent.commands.length).to.be.at.most(20 * keys.length + 1);
    expect(sent.commands.length).to.be.below(1_000 / 10);
    const window = Math.floor(clock.at / 1000);
    // One GET a key (the keys are in different Cluster slots: an MGET of them is refused there).
    const totals = await Promise.all(keys.map((key) => redis.get(`${prefix}:ratelimit:${bucketOf(key)}:${window}`)));
    expect(totals).to.deep.equal(['260', '260', '240', '240']);

    // Idle: nothing unsynced, so no timer and no command, however long we look.
    await l.flush();
    const settled = sent.commands.length;
    await elapse(5 * syncMs, 'five sync periods of idleness, in which nothing may be sent');
    expect(sent.commands.length).to.equal(settled);
    await l.close();
    expect(sent.commands.length).to.equal(settled);
    expect(errors).to.deep.equal([]);
  });
});

describe('rate limit: rateLimitPerKey middleware', () => {
  let prefix: string;
  let redis: Redis;
  let server: Server;
  let limiter: SharedRateLimiter;
  let baseUrl: string;

  before(async () => {
    prefix = uniquePrefix('rl');
    redis = new Redis(TEST_REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    limiter = new SharedRateLimiter({ redis, prefix, perSecond: 3 });
    const app = express();
    app.use(requireApiKey(new Map([[apiKeyDigest(KEY), 'tenant-a'], [apiKeyDigest(OTHER_KEY), 'tenant-b']])));
    app.use(rateLimitPerKey(limiter, 3));
    app.get('/ok', (_req, res) => void res.json({ ok: true }));
    app.use(problemMiddleware(silentLogger, 1024));
    server = app.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => server.once('listening', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    await limiter?.close();
    redis?.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it('answers 429 rate_limited problem+json with Retry-After past the limit', async () => {
    // Sequential, so they all land in one or two windows: at most 3 each.
    const statuses: number[] = [];
    let refused: Response | undefined;
    for (let i = 0; i < 8 && !refused; i++) {
      const res = await fetch(`${baseUrl}/ok`, { headers: { authorization: `Bearer ${KEY}` } });
      statuses.push(res.status);
      if (res.status === 429) refused = res;
      else await res.body?.cancel();
    }
    expect(refused, `statuses ${statuses.join(',')}`).to.not.equal(undefined);
    expect(expectRetryAfter(refused!)).to.equal(1);
    const problem = await expectProblem(refused!, 429, 'rate_limited');
    expect(problem.detail).to.include('3 requests a second');
    expect((await fetch(`${baseUrl}/ok`, { headers: { authorization: `Bearer ${OTHER_KEY}` } })).status).to.equal(200);
  });
});
