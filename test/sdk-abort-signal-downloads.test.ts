import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { InferClient } from '@infer/sdk';

/**
 * Results downloads on the one long-lived shutdown signal an app passes to
 * every call (sdk-abort-signal.test.ts covers plain calls). The signal is
 * linked to a download's own controller while its body is read
 * (packages/sdk/src/abort-links.ts); whatever a finished download left
 * linked would stay as long as the signal lives. It shows as a controller
 * aborted when the app finally aborts the signal.
 */
describe('sdk: results downloads on one long-lived AbortSignal', function () {
  this.timeout(30_000);
  let server: http.Server;
  let base: string;
  let contentType = 'application/x-ndjson';

  before(async () => {
    server = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': contentType }).end('{"index":0}\n');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  /** How many AbortControllers linkAbort aborts when `shutdown` aborts (what was still linked to its signal). */
  function countLinked(shutdown: AbortController): number {
    const proto = AbortController.prototype;
    const original = proto.abort;
    let aborted = 0;
    proto.abort = function (this: AbortController, reason?: unknown) {
      // Only those linkAbort aborts itself (not fetch's own controllers that follow them).
      if (this !== shutdown && !this.signal.aborted && /abort-links/.test((new Error().stack ?? '').split('\n')[2] ?? '')) aborted++;
      return original.call(this, reason);
    };
    try {
      shutdown.abort(new Error('shutting down'));
    } finally {
      proto.abort = original;
    }
    return aborted;
  }

  it('keeps nothing linked to it once each download has been read to its end', async () => {
    const client = new InferClient({ baseUrl: base, apiKey: 'k' });
    const shutdown = new AbortController();
    for (let i = 0; i < 200; i++) {
      const lines = [];
      for await (const line of client.batches.results(`b${i}`, { signal: shutdown.signal })) lines.push(line);
      expect(lines).to.have.length(1);
    }
    expect(countLinked(shutdown), 'controllers of finished downloads still linked to the signal').to.equal(0);
  });

  it('keeps nothing linked to it after downloads refused as not NDJSON', async () => {
    const client = new InferClient({ baseUrl: base, apiKey: 'k' });
    const shutdown = new AbortController();
    contentType = 'text/html';
    try {
      for (let i = 0; i < 50; i++) {
        const err = await client.batches.resultsStream(`b${i}`, { signal: shutdown.signal }).catch((e: unknown) => e);
        expect(err).to.be.instanceOf(Error);
      }
    } finally {
      contentType = 'application/x-ndjson';
    }
    expect(countLinked(shutdown), 'controllers of refused downloads still linked to the signal').to.equal(0);
  });

  it('keeps nothing linked to it once the reader cancels each stream', async () => {
    const client = new InferClient({ baseUrl: base, apiKey: 'k' });
    const shutdown = new AbortController();
    for (let i = 0; i < 50; i++) {
      const stream = await client.batches.resultsStream(`b${i}`, { signal: shutdown.signal });
      await stream.cancel();
    }
    expect(countLinked(shutdown), 'controllers of canceled downloads still linked to the signal').to.equal(0);
  });
});
