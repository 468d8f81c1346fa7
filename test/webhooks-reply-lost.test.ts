import { expect } from 'chai';
import { Redis } from 'ioredis';
import { keys } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import type { WebhookDelivery } from '@infer/webhooks';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { startPlatform, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { RedisProxy } from './helpers/tcp-proxy.js';
import { waitUntil } from './helpers/wait.js';
import { webhookQueueIdle } from './helpers/webhook-queue.js';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.js';

/**
 * Webhook state written over a Redis connection whose reply is lost to a
 * blip (the command ran; the connection dropped before its answer came
 * back). ioredis, unless told `autoResendUnfulfilledCommands: false`, sends
 * such a command again after it reconnects, so Redis runs it twice. The
 * gateway's command connection is told (see gateway.ts and
 * test/enqueue-reply-lost.test.ts); the connections the webhook code uses
 * are not.
 */

const INPUT = { features: new Array(64).fill(0.5) };

async function deliveriesOf(p: TestPlatform, jobId: string): Promise<WebhookDelivery[]> {
  const res = await p.api(`/v1/jobs/${jobId}/webhook_deliveries`);
  expect(res.status).to.equal(200);
  return ((await res.json()) as { data: WebhookDelivery[] }).data;
}

async function deliveredJob(p: TestPlatform, url: string): Promise<WebhookDelivery> {
  const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: INPUT, webhook: url }) });
  expect(res.status).to.equal(202);
  const job = (await res.json()) as { id: string };
  return waitUntil(async () => (await deliveriesOf(p, job.id)).find((d) => d.state === 'succeeded'), 10_000, `job ${job.id} delivered`);
}

async function delivery(p: TestPlatform, eventId: string): Promise<WebhookDelivery> {
  const res = await p.api(`/v1/webhook_deliveries/${eventId}`);
  expect(res.status).to.equal(200);
  return (await res.json()) as WebhookDelivery;
}

/**
 * docs/api.md: "POST /v1/webhook_deliveries/{event_id}/resend: One more
 * attempt, now ... 202 with the WebhookDelivery, pending again. ... one still
 * pending is 409 conflict." and "A delivery whose run fails for good for a
 * reason of the platform's own ... is marked failed, so it can be resent,
 * rather than staying pending."
 */
describe('webhooks: a resend whose Redis reply is lost to a blip (gateway)', function () {
  this.timeout(40_000);
  let proxy: RedisProxy;
  let p: TestPlatform;
  let receiver: WebhookReceiver;
  let redis: Redis;

  before(async () => {
    proxy = new RedisProxy();
    await proxy.listen();
    // Gateway and worker reach Redis through the proxy; only the connection that sends the resend's mark is cut.
    p = await startPlatform({ redisUrl: proxy.url, env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '50' } });
    receiver = await startWebhookReceiver(() => 200);
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  });
  after(async () => {
    await receiver.close();
    await p.close();
    await proxy.close();
    redis.disconnect();
  });

  it('is answered 202 and delivered once more, and the event ends (not pending with every later resend refused 409)', async () => {
    // Warm-up: a resend that goes through, so the resend's script is in Redis's cache and the next one is one EVALSHA.
    const warm = await deliveredJob(p, receiver.url);
    expect((await p.api(`/v1/webhook_deliveries/${warm.id}/resend`, { method: 'POST' })).status).to.equal(202);
    await waitUntil(async () => (await delivery(p, warm.id)).state === 'succeeded', 10_000, 'the warm-up resend');

    const d = await deliveredJob(p, receiver.url);
    const eventKey = keys(p.prefix).webhookEvent(d.id);
    const sent = () => receiver.deliveries.filter((x) => x.headers['webhook-id'] === d.id).length;
    expect(sent()).to.equal(1);

    // The resend's mark (EVALSHA <sha> 2 <event key> <attempts key> <tenant> <now> …) reaches Redis; its reply is lost with the connection.
    const hit = proxy.swallowAfter(`${keys(p.prefix).webhookAttempts(d.id)}\r\n$8\r\ntenant-a`);
    const answer = p.api(`/v1/webhook_deliveries/${d.id}/resend`, { method: 'POST' }).then(async (r) => ({ status: r.status, body: await r.text() }));
    const conn = await hit;
    await waitUntil(async () => (await redis.hget(eventKey, 'state')) === 'pending', 5000, 'the mark to have run in Redis');
    conn.client.destroy();
    conn.upstream.destroy();
    const first = await answer;

    // The resend is answered as one (202), sent once more, and its event ends: not pending with nothing queued.
    expect(first.status, first.body.slice(0, 200)).to.equal(202);
    const ended = await waitUntil(async () => {
      const x = await delivery(p, d.id);
      return x.state !== 'pending' ? x : undefined;
    }, 10_000, 'the resent event to end');
    expect(ended.state).to.equal('succeeded');
    expect(sent(), 'requests the receiver got for this event').to.equal(2);
    // And it can be resent again.
    expect((await p.api(`/v1/webhook_deliveries/${d.id}/resend`, { method: 'POST' })).status).to.equal(202);

    // The event's id pushed onto its job's list a second time (a push sent again after a lost reply): listed once.
    await redis.rpush(keys(p.prefix).webhookDeliveries('job', d.subject.id), d.id);
    expect((await deliveriesOf(p, d.subject.id)).map((x) => x.id)).to.deep.equal([d.id]);
  });
});

/**
 * docs/api.md, The WebhookDelivery object: `attempt_count`, and `attempts`
 * "oldest first, each {attempt, ...}"; `attempt` "counts from 1". One
 * attempt made is one row.
 */
describe('webhooks: an attempt whose record\'s Redis reply is lost to a blip (worker)', function () {
  this.timeout(40_000);
  let proxy: RedisProxy;
  let p: TestPlatform;
  let worker: InferenceWorker | undefined;
  let receiver: WebhookReceiver;
  let redis: Redis;

  before(async () => {
    proxy = new RedisProxy();
    await proxy.listen();
    // The gateway talks to Redis directly; the worker (which delivers and records attempts) through the proxy.
    p = await startPlatform({ worker: false, env: { WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_DELAYS_MS: '50' } });
    worker = await createWorker({ ...p.config, redisUrl: proxy.url }, silentLogger, { models: p.gateway.models });
    await p.gateway.catalog.refresh();
    receiver = await startWebhookReceiver(() => 200);
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
  });
  after(async () => {
    await receiver.close();
    await worker?.close();
    await p.close();
    await proxy.close();
    redis.disconnect();
  });

  it('logs the one attempt once, not twice', async () => {
    // The attempt row (`{"attempt":1,"timestamp":...}`) is written in one MULTI; its reply is lost with the connection.
    const hit = proxy.swallowAfter('"attempt":1,"timestamp"');
    const res = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: INPUT, webhook: receiver.url }) });
    expect(res.status).to.equal(202);
    const job = (await res.json()) as { id: string };
    const conn = await hit;
    const eventId = await waitUntil(() => receiver.deliveries[0]?.headers['webhook-id'] as string | undefined, 10_000, 'the delivery');
    const attemptsKey = keys(p.prefix).webhookAttempts(eventId);
    await waitUntil(async () => (await redis.llen(attemptsKey)) >= 1, 5000, 'the attempt to be recorded in Redis');
    conn.client.destroy();
    conn.upstream.destroy();

    const d = await waitUntil(async () => {
      const x = (await deliveriesOf(p, job.id))[0];
      return x && x.state === 'succeeded' ? x : undefined;
    }, 10_000, 'succeeded');
    // The delivery run ends only once its record's MULTI has been answered (after the reconnect): wait for that.
    await waitUntil(() => webhookQueueIdle(p.prefix), 10_000, 'the delivery run to end');
    const final = await delivery(p, d.id);
    const trail = JSON.stringify(final.attempts.map((a) => [a.attempt, a.status_code, a.trigger]));
    expect(receiver.deliveries.length, 'requests the receiver got').to.equal(1);
    expect(final.attempts.length, `attempt rows vs attempt_count ${final.attempt_count}: ${trail}`).to.equal(final.attempt_count);
  });
});
