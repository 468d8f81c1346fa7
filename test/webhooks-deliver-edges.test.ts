import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { assertWebhookUrlAllowed, deliver, isForbiddenAddress, parseRetryAfter } from '@infer/webhooks';

/**
 * One delivery attempt (packages/webhooks/src/delivery.ts) against receivers
 * that misbehave at the HTTP level, and the address guard's edges. No Redis.
 */

const signed = { 'webhook-id': 'msg_x', 'webhook-timestamp': '1', 'webhook-signature': 'v1,x' };

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function closeServer(server: net.Server, sockets: Set<net.Socket>): Promise<void> {
  for (const s of sockets) s.destroy();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A raw TCP receiver: `onConnection` writes whatever it likes. */
async function rawServer(onConnection: (socket: net.Socket) => void): Promise<{ url: string; sockets: Set<net.Socket>; close(): Promise<void>; connections: number }> {
  const sockets = new Set<net.Socket>();
  const state = { connections: 0 };
  const server = net.createServer((socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  const port = await listen(server);
  return {
    url: `http://127.0.0.1:${port}/hook`,
    sockets,
    close: () => closeServer(server, sockets),
    get connections() {
      return state.connections;
    },
  };
}

describe('webhooks: deliver() against misbehaving receivers', function () {
  this.timeout(20_000);

  it('a 2xx whose body never ends is a delivery, reported at once (not after the timeout)', async () => {
    const sockets = new Set<net.Socket>();
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        const timer = setInterval(() => res.write('x'.repeat(16 * 1024)), 5);
        res.on('close', () => clearInterval(timer));
      });
    });
    server.on('connection', (s) => (sockets.add(s), s.on('close', () => sockets.delete(s))));
    const port = await listen(server);
    try {
      const t = performance.now();
      const o = await deliver({ url: `http://127.0.0.1:${port}/`, headers: signed, body: '{}' }, { allowPrivate: true, timeoutMs: 3000 });
      expect(o.ok).to.equal(true);
      expect(o.statusCode).to.equal(200);
      expect(performance.now() - t).to.be.below(1500);
    } finally {
      await closeServer(server, sockets);
    }
  });

  it('a receiver that never reads a large body ends as a timed-out, retryable attempt', async () => {
    const r = await rawServer((socket) => socket.pause());
    try {
      const body = JSON.stringify({ pad: 'y'.repeat(8 * 1024 * 1024) });
      const o = await deliver({ url: r.url, headers: signed, body }, { allowPrivate: true, timeoutMs: 800 });
      expect(o).to.include({ ok: false, statusCode: null, final: false });
      expect(o.error).to.match(/timed out/);
      expect(o.durationMs).to.be.within(700, 3000);
    } finally {
      await r.close();
    }
  });

  it('a receiver closing the connection in the middle of its status line is a failed, retryable attempt', async () => {
    const r = await rawServer((socket) => {
      socket.once('data', () => {
        socket.write('HTTP/1.1 20');
        socket.end();
      });
    });
    try {
      const o = await deliver({ url: r.url, headers: signed, body: '{}' }, { allowPrivate: true, timeoutMs: 3000 });
      expect(o).to.include({ ok: false, statusCode: null, final: false });
      expect(o.error).to.be.a('string').and.not.equal('');
    } finally {
      await r.close();
    }
  });

  it('an endless stream of 1xx informational answers ends at the timeout, as a failed attempt', async () => {
    const r = await rawServer((socket) => {
      socket.once('data', () => {
        const timer = setInterval(() => socket.write('HTTP/1.1 102 Processing\r\n\r\n'), 20);
        socket.on('close', () => clearInterval(timer));
      });
    });
    try {
      const o = await deliver({ url: r.url, headers: signed, body: '{}' }, { allowPrivate: true, timeoutMs: 700 });
      expect(o).to.include({ ok: false, final: false });
      expect(o.error).to.match(/timed out/);
    } finally {
      await r.close();
    }
  });

  it('a 103 Early Hints then a 204 is a delivery', async () => {
    const r = await rawServer((socket) => {
      socket.once('data', () => socket.end('HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n'));
    });
    try {
      const o = await deliver({ url: r.url, headers: signed, body: '{}' }, { allowPrivate: true, timeoutMs: 3000 });
      expect(o).to.include({ ok: true, statusCode: 204 });
    } finally {
      await r.close();
    }
  });

  it('a 307 to a private address is not followed: one connection, a failed attempt naming the redirect', async () => {
    const r = await rawServer((socket) => {
      socket.once('data', () => socket.end('HTTP/1.1 307 Temporary Redirect\r\nLocation: http://169.254.169.254/latest/meta-data\r\nContent-Length: 0\r\n\r\n'));
    });
    try {
      const o = await deliver({ url: r.url, headers: signed, body: '{}' }, { allowPrivate: true, timeoutMs: 3000 });
      expect(o).to.include({ ok: false, statusCode: 307, final: false });
      expect(o.error).to.match(/redirect \(307\).*not followed/);
      expect(r.connections).to.equal(1);
    } finally {
      await r.close();
    }
  });

  it('a 299 (an unusual 2xx) is a delivery', async () => {
    const r = await rawServer((socket) => {
      socket.once('data', () => socket.end('HTTP/1.1 299 Odd\r\nContent-Length: 0\r\n\r\n'));
    });
    try {
      const o = await deliver({ url: r.url, headers: signed, body: '{}' }, { allowPrivate: true, timeoutMs: 3000 });
      // 299 is 2xx: a delivery (docs: "Any 2xx").
      expect(o).to.include({ ok: true, statusCode: 299 });
    } finally {
      await r.close();
    }
  });

  it('sends exactly the body and the three signature headers, content-length in bytes for non-ASCII bodies', async () => {
    let got: { body: Buffer; headers: http.IncomingHttpHeaders } | undefined;
    const sockets = new Set<net.Socket>();
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        got = { body: Buffer.concat(chunks), headers: req.headers };
        res.writeHead(204).end();
      });
    });
    server.on('connection', (s) => (sockets.add(s), s.on('close', () => sockets.delete(s))));
    const port = await listen(server);
    try {
      const body = JSON.stringify({ note: 'é 😀 \u2028 ✓' });
      const o = await deliver({ url: `http://127.0.0.1:${port}/`, headers: signed, body }, { allowPrivate: true });
      expect(o.ok).to.equal(true);
      expect(got!.body.toString('utf8')).to.equal(body);
      expect(Number(got!.headers['content-length'])).to.equal(Buffer.byteLength(body));
      expect(got!.headers['content-type']).to.equal('application/json');
      expect(got!.headers['webhook-id']).to.equal('msg_x');
    } finally {
      await closeServer(server, sockets);
    }
  });
});

describe('webhooks: address guard edges', () => {
  it('Retry-After values that are not delta-seconds nor an HTTP date are ignored (not read as a date)', () => {
    const now = Date.parse('2025-06-01T00:00:00Z');
    // Date.parse is lenient: '1.5' or '120.0' or a bare year must not become a wait.
    for (const v of ['1.5', '-5', '120.0', 'soon']) {
      const ms = parseRetryAfter(v, now);
      expect(ms === null || ms === 0, `${v} → ${ms}`).to.equal(true);
    }
    expect(parseRetryAfter('Wed, 21 Oct 2099 07:28:00 GMT', now)).to.be.greaterThan(0);
  });

  it('refuses the IPv6 special-purpose and deprecated local ranges at submit (site-local fec0::/10, discard 100::/64)', () => {
    const refused = (u: string) => {
      try {
        assertWebhookUrlAllowed(u, false);
        return false;
      } catch {
        return true;
      }
    };
    expect({ siteLocal: refused('http://[fec0::1]/h'), discard: refused('http://[100::1]/h') }).to.deep.equal({ siteLocal: true, discard: true });
  });

  it('IPv4-mapped forms in hex are refused like their IPv4', () => {
    for (const a of ['::ffff:7f00:1', '::ffff:a9fe:a9fe', '0:0:0:0:0:ffff:a00:1', '::FFFF:10.0.0.1']) expect(isForbiddenAddress(a), a).to.equal(true);
  });
});
