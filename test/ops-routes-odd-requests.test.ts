import net from 'node:net';
import { expect } from 'chai';
import { parse } from './helpers/prometheus.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/** Send raw HTTP/1.1 bytes, answer the status line's code (0 when the connection closed without one). */
function raw(port: number, request: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      text += d;
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (m) {
        socket.destroy();
        resolve(Number(m[1]));
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
    socket.write(request);
  });
}

/**
 * The operations routes and the worker's metrics endpoint answer any request: never a 5xx, never a
 * hang, and odd requests add no label values of their own to /metrics.
 */
describe('odd requests to /healthz, /readyz, /metrics and the worker\'s endpoint', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform();
  });
  after(async () => {
    await p?.close();
  });

  it('the gateway: no 5xx, and the odd methods and paths give no new route label', async () => {
    const port = Number(new URL(p.baseUrl).port);
    const requests = [
      'HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n',
      'POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc',
      'DELETE /readyz HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /readyz?x=%zz HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /healthz/../metrics HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /METRICS HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /metrics%2F HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /readyz/ HTTP/1.1\r\nHost: x\r\n\r\n',
      'PURGE /healthz HTTP/1.1\r\nHost: x\r\n\r\n',
      'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET http://evil.example/readyz HTTP/1.1\r\nHost: x\r\n\r\n',
      `GET /healthz?${'a'.repeat(6000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    ];
    for (const r of requests) {
      const status = await raw(port, r);
      expect(status, r.split('\r\n')[0]!.slice(0, 60)).to.be.within(200, 499);
    }
    const text = await (await fetch(`${p.baseUrl}/metrics`)).text();
    const routes = new Set(parse(text).filter((s) => s.name === 'infer_http_request_duration_seconds_count').map((s) => s.labels.route!));
    for (const route of routes) expect(route, 'a route label').to.match(/^(\/[A-Za-z0-9_.:/{}-]*|unmatched)$/);
    expect([...routes].some((r) => /evil|%|\.\./i.test(r))).to.equal(false);
  });

  it('the worker\'s endpoint: no 5xx, and /metrics keeps serving', async () => {
    const port = p.worker!.metricsPort;
    const requests = [
      'HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n',
      'POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc',
      'GET /metrics?x=%zz HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /healthz/ HTTP/1.1\r\nHost: x\r\n\r\n',
      'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET http://evil.example/metrics HTTP/1.1\r\nHost: x\r\n\r\n',
    ];
    for (const r of requests) {
      const status = await raw(port, r);
      expect(status, r.split('\r\n')[0]!.slice(0, 60)).to.be.within(200, 499);
    }
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(res.status).to.equal(200);
    expect(await res.text()).to.match(/^infer_worker_up 1$/m);
  });
});
