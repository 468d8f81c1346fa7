import http from 'node:http';
import { expect } from 'chai';
import { TEST_KEY, TEST_REDIS_URL, deletePrefix, SHIPPED_MODELS, uniquePrefix } from './helpers/platform.js';
import { freePort } from './helpers/redis-server.js';
import { Spawned } from './helpers/spawned.js';

/**
 * docs: "a gateway stops listening and answers the requests in flight. It
 * then exits 0, or 1 if it has not finished by its deadline (gateway 10 s)";
 * gateway.ts close(): "wake every long poll so its request can answer".
 *
 * A `POST /v1/jobs` with `Prefer: wait=30` whose body is still arriving when
 * SIGTERM comes is a request in flight: it is accepted once its body is in,
 * and must be answered (202, the job queued) within the shutdown, not held
 * for its whole wait. Its waiter is registered only after the gateway woke
 * every waiter, so nothing wakes it any more.
 */

const body = JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } });

/** POST /v1/jobs with Expect: 100-continue, the end of the body held back. */
async function heldRequest(port: number, headers: Record<string, string>): Promise<{ finish(): void; response: Promise<{ status: number; at: number }> }> {
  const req = http.request({
    agent: false,
    host: '127.0.0.1',
    port,
    method: 'POST',
    path: '/v1/jobs',
    headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), expect: '100-continue', ...headers },
  });
  const response = new Promise<{ status: number; at: number }>((resolve, reject) => {
    req.once('response', (res) => {
      res.resume();
      res.once('end', () => resolve({ status: res.statusCode!, at: performance.now() }));
      res.once('error', reject);
    });
    req.once('error', reject);
  });
  response.catch(() => undefined);
  await new Promise<void>((resolve, reject) => {
    req.once('continue', resolve);
    response.catch(reject);
  });
  req.write(body.slice(0, 10));
  return { finish: () => req.end(body.slice(10)), response };
}

describe('gateways: SIGTERM with a Prefer: wait submit still arriving', function () {
  this.timeout(60_000);
  let prefix: string;
  let gateway: Spawned | undefined;

  before(() => {
    prefix = uniquePrefix('gw-sd');
  });
  afterEach(() => gateway?.kill());
  after(async () => {
    gateway?.kill();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it('answers it (202, queued) within the shutdown and exits 0 in time, instead of holding it for its 30 s wait', async () => {
    const port = await freePort();
    gateway = new Spawned('start:gateway', {
      REDIS_URL: TEST_REDIS_URL,
      QUEUE_PREFIX: prefix,
      MODEL_REPOSITORY: SHIPPED_MODELS,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      PORT: String(port),
      HOST: '127.0.0.1',
    });
    await gateway.waitForLog('gateway listening', 30_000);
    // No worker serves this prefix: the job stays queued, so only the shutdown can end the wait early.
    const held = await heldRequest(port, { prefer: 'wait=30' });
    const t0 = performance.now();
    gateway.signalGroup('SIGTERM');
    await gateway.waitForLog('shutting down', 5_000);
    held.finish();
    const exit = await gateway.exit(40_000);
    const answer = await held.response.then(
      (r) => ({ status: r.status, ms: Math.round(r.at - t0) }),
      (err: Error) => ({ status: 0, ms: Math.round(performance.now() - t0), err: err.message }),
    );
    expect({ code: exit.code, signal: exit.signal }, gateway.tail()).to.deep.equal({ code: 0, signal: null });
    expect(exit.at - t0, 'ms from SIGTERM to the exit (the gateway deadline is 10 s)').to.be.below(10_000);
    expect(answer.status, JSON.stringify(answer)).to.equal(202);
  });
});
