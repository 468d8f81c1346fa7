import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { deliver } from '@infer/webhooks';
import { waitUntil } from './helpers/wait.js';

/**
 * The receiver's answer body means nothing to the platform: at most 64 KiB of
 * it is read, then the connection is cut. It was read for as long as the
 * receiver sent it, up to the attempt's timeout (10 s), with no byte limit:
 * a receiver answering 200 and then streaming had the worker download
 * gigabytes per event at full speed, on the event loop its model runs
 * share, on a socket no slot counted any more (the attempt had ended).
 */

const signed = { 'webhook-id': 'msg_x', 'webhook-timestamp': '1', 'webhook-signature': 'v1,x' };

describe('webhooks: the body of a receiver’s answer is not read without bound', function () {
  this.timeout(20_000);

  for (const status of [200, 500]) {
    it(`a ${status} followed by an endless fast body: the connection is let go soon after the status, not after the timeout`, async () => {
      const sockets = new Set<net.Socket>();
      const state = { written: 0, closedAt: 0 };
      const chunk = Buffer.alloc(64 * 1024, 120);
      const server = net.createServer((socket) => {
        sockets.add(socket);
        socket.on('error', () => undefined);
        socket.on('close', () => {
          sockets.delete(socket);
          state.closedAt = Date.now();
        });
        socket.once('data', () => {
          socket.write(`HTTP/1.1 ${status} X\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n`);
          const pump = () => {
            while (!socket.destroyed) {
              state.written += chunk.length;
              socket.write(`${chunk.length.toString(16)}\r\n`);
              socket.write(chunk);
              if (!socket.write('\r\n')) {
                socket.once('drain', pump);
                return;
              }
            }
          };
          pump();
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const port = (server.address() as AddressInfo).port;
      try {
        const outcome = await deliver({ url: `http://127.0.0.1:${port}/hook`, headers: signed, body: '{}' }, { allowPrivate: true, timeoutMs: 5_000 });
        const answeredAt = Date.now();
        expect(outcome.statusCode).to.equal(status);
        // Let go of within 2 s of the status (or before 4 MiB): not streamed on for the rest of the attempt's timeout.
        const closed = await waitUntil(() => state.closedAt > 0 || Date.now() - answeredAt > 4_000, 8_000, 'the receiver connection to close').then(() => state.closedAt);
        expect(closed > 0 && closed - answeredAt < 2_000, `connection still open ${Date.now() - answeredAt} ms after the answer; ${(state.written / 2 ** 20).toFixed(0)} MiB sent by then`).to.equal(true);
        expect(state.written, 'bytes the receiver got to send').to.be.below(4 * 2 ** 20);
      } finally {
        for (const s of sockets) s.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    });
  }
});
