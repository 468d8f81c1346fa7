/**
 * docs/sdk.md, "Retries and deadlines": "`jobs.wait`, `jobs.run` and
 * `batches.wait` take a `timeoutMs` of their own for the whole call. All
 * throw `InferTimeoutError`" and "`timeoutMs` of `wait` and `run` bounds the
 * whole call". A gateway under a Redis blip answers its GETs `503
 * unavailable` with a `Retry-After` (docs/api.md); the SDK retries GETs
 * after Retry-After. Those retry pauses (and a request that hangs) must not
 * carry a call past the deadline its caller gave it.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { InferApiError, InferClient, InferTimeoutError } from '@infer/sdk';
import { waitUntil } from './helpers/wait.js';

const problem = (status: number, code: string, retryAfter: string) =>
  new Response(JSON.stringify({ type: `https://infer.dev/problems/${code}`, title: 'Service Unavailable', status, detail: 'Redis is not answering', code }), {
    status,
    headers: { 'content-type': 'application/problem+json', 'retry-after': retryAfter },
  });

/** A gateway whose Redis is away for a while: every request answers 503 unavailable, Retry-After: 1. */
const redisAway: typeof fetch = async () => problem(503, 'unavailable', '1');

/** How long `promise` took to settle, and what it settled with. */
async function settle(promise: Promise<unknown>): Promise<{ ms: number; error: unknown }> {
  const t0 = Date.now();
  try {
    await promise;
    return { ms: Date.now() - t0, error: undefined };
  } catch (error) {
    return { ms: Date.now() - t0, error };
  }
}

describe('sdk: the timeoutMs of wait, run and batches.wait bounds the whole call', function () {
  this.timeout(20_000);

  it('jobs.wait({timeoutMs: 300}) throws InferTimeoutError by its deadline, not after the Retry-After pauses of its retried GETs', async () => {
    const client = new InferClient({ baseUrl: 'http://gw.invalid', apiKey: 'k', fetch: redisAway });
    const { ms, error } = await settle(client.jobs.wait('j1', { timeoutMs: 300 }));
    // Not ~3 s (3 retries × Retry-After 1) and then the 503: the first pause would end past the deadline.
    expect(error, `settled after ${ms} ms with ${String(error)}`).to.be.instanceOf(InferTimeoutError);
    expect(ms).to.be.below(1500);
  });

  it('jobs.run({timeoutMs: 300}, {idempotencyKey}) throws InferTimeoutError by its deadline, not after the Retry-After pauses of its retried requests', async () => {
    const client = new InferClient({ baseUrl: 'http://gw.invalid', apiKey: 'k', fetch: redisAway });
    const { ms, error } = await settle(client.jobs.run({ model: 'mlp', input: {} }, { timeoutMs: 300, idempotencyKey: 'order-1' }));
    expect(error, `settled after ${ms} ms with ${String(error)}`).to.be.instanceOf(InferTimeoutError);
    expect(ms).to.be.below(1500);
  });

  it('batches.wait({timeoutMs: 300}) throws InferTimeoutError by its deadline, not after the Retry-After pauses of its retried requests', async () => {
    const client = new InferClient({ baseUrl: 'http://gw.invalid', apiKey: 'k', fetch: redisAway });
    const { ms, error } = await settle(client.batches.wait('b1', { timeoutMs: 300, pollMs: 50 }));
    expect(error, `settled after ${ms} ms with ${String(error)}`).to.be.instanceOf(InferTimeoutError);
    expect(error).not.to.be.instanceOf(InferApiError);
    expect(ms).to.be.below(1500);
  });

  it('jobs.wait({timeoutMs: 300}) against a gateway that never answers gives up at its deadline, not at the client timeoutMs', async () => {
    const hanging: typeof fetch = (_input, init) =>
      new Promise((_resolve, reject) => {
        init?.signal?.addEventListener('abort', () => reject(init.signal?.reason), { once: true });
      });
    const client = new InferClient({ baseUrl: 'http://gw.invalid', apiKey: 'k', fetch: hanging, timeoutMs: 5000 });
    const { ms, error } = await settle(client.jobs.wait('j1', { timeoutMs: 300 }));
    // Not 5.3 s (the client's per-request timeoutMs on top of the 0.3 s long poll).
    expect(error, `settled after ${ms} ms`).to.be.instanceOf(InferTimeoutError);
    expect(ms).to.be.below(1500);
  });

  it('jobs.run({timeoutMs}) keeps as its cause the 503 that would have been retried past the deadline, as jobs.wait does', async () => {
    // The submit is taken; every poll then answers 503 with a Retry-After past the deadline.
    const queuedThenAway: typeof fetch = async (_input, init) =>
      (init?.method ?? 'GET') === 'POST'
        ? new Response(JSON.stringify({ id: 'j1', object: 'job', model: 'mlp', version: '1', status: 'queued' }), { status: 202, headers: { 'content-type': 'application/json' } })
        : problem(503, 'unavailable', '5');
    const client = new InferClient({ baseUrl: 'http://gw.invalid', apiKey: 'k', fetch: queuedThenAway });
    for (const [name, call] of [
      ['jobs.wait', () => client.jobs.wait('j1', { timeoutMs: 300 })],
      ['jobs.run', () => client.jobs.run({ model: 'mlp', input: {} }, { timeoutMs: 300 })],
    ] as const) {
      const { error } = await settle(call());
      expect(error, name).to.be.instanceOf(InferTimeoutError);
      expect((error as Error).cause, `${name}: the cause`).to.be.instanceOf(InferApiError);
      expect(((error as Error).cause as InferApiError).status, name).to.equal(503);
    }
  });
});

describe('sdk: an aborted signal rejects with its reason', function () {
  this.timeout(20_000);

  it("while an error answer's body is still arriving: the reason, not an InferApiError made of the status line", async () => {
    // A gateway (or a proxy) that sends a 500's headers and then its body slowly.
    let requests = 0;
    const server = http.createServer((_req, res) => {
      requests++;
      res.writeHead(500, { 'content-type': 'application/problem+json' });
      res.write('{"type":"about:blank",');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const client = new InferClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, apiKey: 'k' });
      const controller = new AbortController();
      const reason = new Error('the caller gave up');
      const call = settle(client.jobs.cancel('j1', { signal: controller.signal }));
      await waitUntil(() => requests === 1, 5000, 'the request at the stub');
      await new Promise((r) => setImmediate(r));
      controller.abort(reason);
      const { error } = await call;
      expect(error, `rejected with ${String(error)}`).to.equal(reason);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
