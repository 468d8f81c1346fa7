/**
 * An application passes one long-lived AbortSignal (its shutdown signal) to
 * every SDK call, for months. The SDK must keep nothing per call on it, and
 * must not make Node warn of a listener leak when many calls share it at
 * once; its abort must still reach a call in flight, a retry pause, and a
 * results stream being read after the call returned. The SDK once joined the
 * signals with AbortSignal.any, whose every composite Node 20 keeps in the
 * caller's signal (nodejs/node#55351).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { InferClient } from '@infer/sdk';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** What Node holds in a signal for the composite signals AbortSignal.any made from it (an internal set). */
function compositesHeld(signal: AbortSignal): number {
  const sym = Object.getOwnPropertySymbols(signal).find((s) => s.toString() === 'Symbol(kDependantSignals)');
  const set = sym ? (signal as unknown as Record<symbol, Set<unknown> | undefined>)[sym] : undefined;
  return set?.size ?? 0;
}

describe('sdk: one long-lived AbortSignal passed to every call', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);

  before(async () => {
    p = await startPlatform({ worker: false, env: { RATE_LIMIT_PER_SECOND: '100000' } });
    process.on('warning', onWarning);
  });
  after(async () => {
    process.off('warning', onWarning);
    await p?.close();
  });

  it('3,000 calls, 30 at a time, leave nothing per call on it and no listener-leak warning', async () => {
    const client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
    const shutdown = new AbortController();
    for (let i = 0; i < 3000; i += 30) {
      await Promise.all(Array.from({ length: 30 }, () => client.models.get('mlp', { signal: shutdown.signal })));
    }
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(compositesHeld(shutdown.signal), 'composite signals kept by the caller\'s signal').to.equal(0);
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message)).to.deep.equal([]);
  });

  it('its abort still ends 30 calls in flight at once, each with its reason', async () => {
    const client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
    const { id } = await client.jobs.create({ model: 'mlp', input: { features: Array.from({ length: 64 }, () => 0.5) } });
    const shutdown = new AbortController();
    // No worker: each long poll waits until the abort.
    const waits = Array.from({ length: 30 }, () => client.jobs.get(id, { wait: 30, signal: shutdown.signal }).catch((e: unknown) => e));
    const reason = new Error('shutting down');
    setImmediate(() => shutdown.abort(reason));
    for (const r of await Promise.all(waits)) expect(r).to.equal(reason);
  });
});

describe('sdk: a results stream read after the call returned', function () {
  this.timeout(20_000);

  it('is cut by the caller\'s signal mid-body', async () => {
    const server = http.createServer((req, res) => {
      req.resume();
      // One line, then nothing: the stream stays open until the client gives up.
      res.writeHead(200, { 'content-type': 'application/x-ndjson' }).write('{"index":0}\n');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const client = new InferClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, apiKey: 'k' });
      const controller = new AbortController();
      const stream = await client.batches.resultsStream('b1', { signal: controller.signal });
      const reader = stream.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).to.equal('{"index":0}\n');
      const next = reader.read().catch((e: unknown) => e);
      controller.abort(new Error('no longer wanted'));
      expect(await next).to.be.instanceOf(Error);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
