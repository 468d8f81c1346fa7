import net from 'node:net';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { jobKeys } from '@infer/contract';
import { QueueProbe } from './helpers/jobs.js';
import { startPlatform, TEST_KEY, TEST_REDIS_URL, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * `Prefer: wait` at its edges.
 *
 * docs/api.md: "If the client disconnects, the wait is dropped (the job
 * still runs)." That includes a client that sends its
 * request and goes away at once (a timeout, a crash, a proxy giving up):
 * it is gone before the gateway has written or read the job and set its
 * "client gone" hook, whose 'close' has then already fired. Its waiter must
 * not be held for the whole wait (here 60 s).
 *
 * And `Preference-Applied: wait=N` is "the seconds waited for at most":
 * a fractional wait rounds up.
 */
describe('Prefer: wait: a client already gone, a fractional wait', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let redis: Redis;
  let probe: QueueProbe;
  const body = JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.25) } });

  before(async () => {
    // No worker: the jobs stay queued, so nothing but the client's going away can end a wait early.
    p = await startPlatform({ worker: false, env: { MAX_WAIT_SECONDS: '60' } });
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
    probe = new QueueProbe(TEST_REDIS_URL, p.prefix, [['mlp', '2']]);
  });
  after(async () => {
    await probe.close();
    redis.disconnect();
    await p.close();
  });

  /** Write a whole request on a fresh connection and close it at once; resolves once the socket is closed. */
  async function sendAndLeave(request: string, how: 'destroy' | 'end'): Promise<void> {
    const port = Number(new URL(p.baseUrl).port);
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('connect', resolve));
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.write(request);
    if (how === 'destroy') socket.destroy();
    else socket.end();
    await closed;
  }

  it('POST /v1/jobs with Prefer: wait=60: the waiter is dropped when the client has gone (the job is still queued)', async () => {
    const base = p.gateway.waiters.size;
    for (let i = 0; i < 4; i++) {
      const before = (await probe.snapshot()).queued;
      await sendAndLeave(
        `POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_KEY}\r\nPrefer: wait=60\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        i % 2 === 0 ? 'destroy' : 'end',
      );
      // The gateway took the job (it still runs, as documented)...
      await waitUntil(async () => (await probe.snapshot()).queued > before, 5000, 'the job to be queued');
    }
    // ...and, its client gone, nobody waits on it any more.
    const dropped = await waitUntil(() => p.gateway.waiters.size === base, 5000, 'the gone clients’ waiters to be dropped').then(
      () => true,
      () => false,
    );
    expect(dropped, `waiters still held for clients that left: ${p.gateway.waiters.size - base} (of 4), each for the whole 60 s wait`).to.equal(true);
  });

  it('GET /v1/jobs/{id} with Prefer: wait=60 (long poll): the waiter is dropped when the client has gone', async () => {
    const base = p.gateway.waiters.size;
    for (let i = 0; i < 8; i++) {
      const created = await p.api('/v1/jobs', { method: 'POST', body });
      expect(created.status).to.equal(202);
      const id = ((await created.json()) as { id: string }).id;
      await sendAndLeave(`GET /v1/jobs/${id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_KEY}\r\nPrefer: wait=60\r\n\r\n`, 'end');
      // The long poll's read ran: it left this gateway's channel on the job's envelope.
      const k = jobKeys(p.prefix, id);
      await waitUntil(
        async () => {
          const where = await redis.hget(k.index, id);
          const watchers = where ? await redis.hget(`${k.taggedPrefix}:${where}`, 'w') : null;
          return watchers?.includes(p.gateway.waiters.channel) ?? false;
        },
        5000,
        'the long poll to have read the job',
      );
    }
    const dropped = await waitUntil(() => p.gateway.waiters.size === base, 5000, 'the gone clients’ waiters to be dropped').then(
      () => true,
      () => false,
    );
    expect(dropped, `waiters still held for clients that left: ${p.gateway.waiters.size - base} (of 8), each for the whole 60 s wait`).to.equal(true);
  });

  it('a fractional wait: Prefer: wait=0.4 holds the answer ~0.4 s, and Preference-Applied rounds up (wait=1), never claiming wait=0', async () => {
    const created = await p.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.1) } }) });
    expect(created.status).to.equal(202);
    const id = ((await created.json()) as { id: string }).id;
    const started = performance.now();
    const res = await p.api(`/v1/jobs/${id}`, { headers: { prefer: 'wait=0.4' } });
    const elapsed = performance.now() - started;
    await res.text();
    expect(res.status).to.equal(200);
    // The wait was applied: the queued job was held for the 0.4 s asked for.
    expect(elapsed).to.be.at.least(380);
    const applied = res.headers.get('preference-applied');
    expect(applied).to.match(/^wait=\d+$/);
    expect(applied, `after waiting ${Math.round(elapsed)} ms`).to.equal('wait=1');
  });
});
