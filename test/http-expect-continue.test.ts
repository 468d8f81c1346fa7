import net from 'node:net';
import { expect } from 'chai';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';

/**
 * `Expect: 100-continue` (curl sends it for large bodies): the client waits
 * for `100 Continue` before it sends the body. A request the gateway will
 * only answer 401 must get that 401 first, so a client with a wrong key is
 * not made to send megabytes for nothing; a request with a good key gets its
 * 100 and is served.
 */
describe('http: Expect: 100-continue', function () {
  this.timeout(20_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p.close();
  });

  const body = JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } });

  /** Send the head, then the body once `100 Continue` comes (never, if it does not); all the gateway wrote. */
  function exchange(key: string): Promise<string> {
    const { port } = new URL(p.baseUrl);
    return new Promise((resolve, reject) => {
      const socket = net.connect(Number(port), '127.0.0.1');
      let text = '';
      let sent = false;
      socket.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        if (!sent && text.startsWith('HTTP/1.1 100') && text.includes('\r\n\r\n')) {
          sent = true;
          socket.write(body);
        }
      });
      socket.on('error', reject);
      socket.on('close', () => resolve(text));
      socket.write(
        `POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`,
      );
    });
  }

  it('answers a wrong key 401 before asking for the body, and asks a good one for it', async () => {
    const refused = await exchange('not-a-key');
    expect(refused.split('\r\n')[0]).to.equal('HTTP/1.1 401 Unauthorized');
    expect(refused).to.not.include('100 Continue');
    const served = await exchange(TEST_KEY);
    expect(served.split('\r\n')[0]).to.equal('HTTP/1.1 100 Continue');
    expect(served).to.match(/\r\n\r\nHTTP\/1\.1 202 Accepted\r\n/);
  });
});
