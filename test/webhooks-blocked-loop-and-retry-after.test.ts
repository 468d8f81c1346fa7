import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { deliver, parseRetryAfter } from '@infer/webhooks';
import { blockEventLoop } from './helpers/wait.js';

/**
 * The delivery worker shares its process's event loop with the inference
 * worker, whose model runs hold that loop (onnxruntime-node runs a model
 * synchronously; WORKER_MAX_RUN_MS allows 15 min). A receiver that answers a
 * 2xx at once, while a run holds the loop past the attempt's timeout, has
 * its answer waiting in the socket when the loop comes back; the attempt's
 * timer fires first (timers run before I/O), so its verdict waits a turn:
 * without that the delivery was judged "timed out" and retried, or, on the
 * last attempt, ended `failed` although the receiver got it and said 2xx.
 */

const signed = { 'webhook-id': 'msg_x', 'webhook-timestamp': '1', 'webhook-signature': 'v1,x' };

describe('webhooks: an answer that came while a model run held the event loop', function () {
  this.timeout(20_000);

  it('a 204 sent at once is a delivery, not "timed out", when the loop was held past the timeout', async () => {
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        // Answer at once, then a model run holds the loop (this receiver shares the process, as a test stand-in).
        res.writeHead(204).end();
        setImmediate(() => blockEventLoop(1_500));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const outcome = await deliver({ url: `http://127.0.0.1:${port}/hook`, headers: signed, body: '{}' }, { allowPrivate: true, timeoutMs: 1_000 });
      expect({ ok: outcome.ok, status: outcome.statusCode, error: outcome.error }).to.deep.equal({ ok: true, status: 204, error: null });
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('webhooks: Retry-After', () => {
  const now = Date.parse('2025-06-01T00:00:00Z');

  it('neither delta-seconds nor an HTTP date is ignored, not read by Date.parse’s lenient parser as a far-off date', () => {
    for (const v of ['soon 2030', 'v2 2099', '12/31/2099', '2030-01-01', 'Sun, 1 Jun 2025 00:00:10 GMT']) {
      expect(parseRetryAfter(v, now), v).to.equal(null);
    }
  });

  it('the three HTTP date forms a recipient must accept (RFC 9110 5.6.7) are read, asctime as GMT; delta-seconds too', () => {
    expect(parseRetryAfter('Sun, 01 Jun 2025 00:00:10 GMT', now)).to.equal(10_000);
    expect(parseRetryAfter('Sunday, 01-Jun-25 00:00:20 GMT', now)).to.equal(20_000);
    expect(parseRetryAfter('Sun Jun  1 00:00:30 2025', now)).to.equal(30_000);
    expect(parseRetryAfter(' 42 ', now)).to.equal(42_000);
    expect(parseRetryAfter('Sat, 31 May 2025 23:00:00 GMT', now), 'a date past').to.equal(0);
  });
});
