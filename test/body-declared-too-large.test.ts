import net from 'node:net';
import { expect } from 'chai';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/api.md, "Errors mid-body": a refusal while the body has not all
 * arrived closes the connection, and the rest of the body is not read. A
 * `Content-Length` past MAX_BODY_BYTES is refused (413) before a byte of the
 * body is read; that answer was sent keep-alive, and Node then read the
 * whole declared body (gigabytes, if declared so) only to drop it. A body
 * another refusal never touched is still drained, and its connection kept
 * (test/sdk-upload-source: a streaming upload refused 429 must get its
 * answer, not a reset connection).
 */
describe('a request refused before its body is read', function () {
  this.timeout(30_000);
  let p: TestPlatform;

  before(async () => {
    p = await startPlatform({ env: { MAX_BODY_BYTES: '1000' } });
  });
  after(async () => {
    await p?.close();
  });

  /** Send `head` (and `body`, if any) on a fresh connection; the answer's head, and whether the gateway closed the connection. */
  async function send(head: string, body = ''): Promise<{ head: string; closed: () => boolean; socket: net.Socket }> {
    const socket = net.connect(Number(new URL(p.baseUrl).port), '127.0.0.1');
    let text = '';
    let closed = false;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (text += d));
    socket.on('close', () => (closed = true));
    socket.on('error', () => undefined);
    socket.write(head + body);
    const answered = await waitUntil(() => (text.includes('\r\n\r\n') ? text.slice(0, text.indexOf('\r\n\r\n')) : null), 10_000, 'the answer');
    return { head: answered, closed: () => closed, socket };
  }

  it('a Content-Length past MAX_BODY_BYTES: 413 with Connection: close, and the connection closed without the body sent', async () => {
    const { head, closed, socket } = await send(
      `POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_KEY}\r\nContent-Type: application/json\r\nContent-Length: 3000000000\r\n\r\n`,
    );
    try {
      expect(head).to.match(/^HTTP\/1\.1 413 /);
      expect(head.toLowerCase()).to.include('connection: close');
      await waitUntil(closed, 5_000, 'the gateway to close the connection');
    } finally {
      socket.destroy();
    }
  });

  it('a body refused untouched (404 on an unknown route) keeps its connection: the next request on it is answered', async () => {
    const body = JSON.stringify({ a: 'x'.repeat(200_000) });
    const request = `POST /v1/nowhere HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_KEY}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    const { head, closed, socket } = await send(request, body);
    try {
      expect(head).to.match(/^HTTP\/1\.1 404 /);
      expect(head.toLowerCase()).to.not.include('connection: close');
      let second = '';
      socket.on('data', (d: string) => (second += d));
      socket.write(`GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`);
      await waitUntil(() => second.includes('HTTP/1.1 200'), 5_000, 'the second answer on the same connection');
      expect(closed()).to.equal(false);
    } finally {
      socket.destroy();
    }
  });
});
