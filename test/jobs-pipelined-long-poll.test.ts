import net from 'node:net';
import { expect } from 'chai';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/api.md, `Prefer: wait`: "If the client disconnects, the wait is dropped (the job still runs)."
 *
 * A client that pipelines its requests (HTTP/1.1 lets it send the next before the first is answered)
 * and goes away: Node gives each request after the first a response that is not on the socket yet, and
 * such a response never emits 'close' when the socket closes. clientGone (routes/jobs.ts) listened on
 * the response only, so those waiters stayed for the whole wait (here 60 s), each with its watcher on
 * the job's envelope, answering to nobody; it now listens on the connection too.
 */
describe('jobs API: pipelined long polls whose client has gone', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  const body = JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.25) } });

  before(async () => {
    // No worker: the jobs stay queued, so only the client going away can end a wait early.
    p = await startPlatform({ worker: false, env: { MAX_WAIT_SECONDS: '60' } });
  });
  after(async () => {
    await p.close();
  });

  async function queuedJob(): Promise<string> {
    const res = await p.api('/v1/jobs', { method: 'POST', body });
    expect(res.status).to.equal(202);
    return ((await res.json()) as { id: string }).id;
  }

  async function pipelineThenLeave(requests: string[], waiters: number): Promise<void> {
    const socket = net.connect(Number(new URL(p.baseUrl).port), '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(requests.join(''));
    await waitUntil(() => p.gateway.waiters.size >= waiters, 5000, 'every pipelined request to be waiting');
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.destroy();
    await closed;
  }

  it('GET /v1/jobs/{id} with Prefer: wait=60, three pipelined on one connection: every waiter is dropped when the client goes', async () => {
    const ids = [await queuedJob(), await queuedJob(), await queuedJob()];
    const base = p.gateway.waiters.size;
    await pipelineThenLeave(
      ids.map((id) => `GET /v1/jobs/${id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_KEY}\r\nPrefer: wait=60\r\n\r\n`),
      base + 3,
    );
    const dropped = await waitUntil(() => p.gateway.waiters.size === base, 5000, 'the gone client’s waiters to be dropped').then(
      () => true,
      () => false,
    );
    expect(dropped, `waiters still held for a client that left: ${p.gateway.waiters.size - base} of 3, each for the whole 60 s wait`).to.equal(true);
  });

  it('POST /v1/jobs with Prefer: wait=60, two pipelined: both waiters are dropped when the client goes (the jobs stay queued)', async () => {
    const base = p.gateway.waiters.size;
    const post = `POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_KEY}\r\nPrefer: wait=60\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    await pipelineThenLeave([post, post], base + 2);
    const dropped = await waitUntil(() => p.gateway.waiters.size === base, 5000, 'the gone client’s waiters to be dropped').then(
      () => true,
      () => false,
    );
    expect(dropped, `waiters still held for a client that left: ${p.gateway.waiters.size - base} of 2`).to.equal(true);
  });
});
