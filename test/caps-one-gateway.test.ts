import net from 'node:net';
import { expect } from 'chai';
import { mlpFeatures } from './helpers/batches.js';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';

/**
 * TENANT_MAX_QUEUED and MAX_QUEUE_DEPTH on ONE gateway, over several queues.
 *
 * docs/api.md, POST /v1/jobs: the limits "are over every queue any gateway
 * has written to, and they hold exactly". Here over HTTP; the envelope
 * writer's own tests (envelopes.test.ts, "two model versions in one turn")
 * hold each limit and the jobs under it.
 */

describe('caps: one gateway holds TENANT_MAX_QUEUED and MAX_QUEUE_DEPTH across queues', function () {
  this.timeout(60_000);

  describe('over HTTP, one gateway, one tenant', () => {
    const CAP = 10;
    let p: TestPlatform;
    before(async () => {
      p = await startPlatform({ worker: false, env: { TENANT_MAX_QUEUED: String(CAP) } });
    });
    after(async () => {
      await p?.close();
    });

    it('a burst spread over mlp versions 1 and 2, read in one turn, is held to TENANT_MAX_QUEUED, not a cap per version', async () => {
      // 2 × CAP requests pipelined on one keep-alive connection (HTTP/1.1): the gateway reads them in one
      // turn, as a busy gateway reads many clients' requests, and writes one envelope per version.
      const url = new URL(p.baseUrl);
      const socket = await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(Number(url.port), url.hostname, () => resolve(s));
        s.once('error', reject);
      });
      let text = '';
      const closed = new Promise<void>((resolve, reject) => {
        socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
        socket.once('close', () => resolve());
        socket.once('error', reject);
      });
      const n = 2 * CAP;
      let requests = '';
      for (let i = 0; i < n; i++) {
        const body = JSON.stringify({ model: 'mlp', version: i % 2 ? '1' : '2', input: { features: mlpFeatures(i) } });
        requests +=
          `POST /v1/jobs HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer ${TEST_KEY}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: ${i === n - 1 ? 'close' : 'keep-alive'}\r\n\r\n${body}`;
      }
      socket.write(requests);
      await closed;
      const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
      expect(statuses.length, 'one answer per request').to.equal(n);
      expect(statuses.every((s) => s === 202 || s === 429), statuses.join(',')).to.equal(true);
      const accepted = statuses.filter((s) => s === 202).length;
      expect(accepted, `one gateway accepted ${accepted} jobs of one tenant for a cap of ${CAP}`).to.equal(CAP);
    });
  });
});
