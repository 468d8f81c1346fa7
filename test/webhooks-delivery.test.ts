import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { Webhook } from 'standardwebhooks';
import {
  assertWebhookUrlAllowed,
  deliver,
  generateSecret,
  guardedLookup,
  parseRetryAfter,
  signWebhook,
  type Resolver,
} from '@infer/webhooks';
import { freePort } from '../scripts/lib/free-port.js';

/** Unit tests of one delivery attempt and its guards, against local servers; no Redis. */

interface Receiver {
  port: number;
  requests: http.IncomingHttpHeaders[];
  close(): Promise<void>;
}

async function receiver(answer: 'ok' | 'hang'): Promise<Receiver> {
  const requests: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req.headers);
    req.resume();
    if (answer === 'ok') req.on('end', () => res.writeHead(200).end('thanks'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const request = (url: string) => ({ url, headers: {}, body: '{"type":"job.completed"}' });
const resolveTo =
  (address: string, family = 4): Resolver =>
  async () => [{ address, family }];

describe('webhooks: one delivery attempt', () => {
  let ok: Receiver;
  let hang: Receiver;
  before(async () => {
    [ok, hang] = await Promise.all([receiver('ok'), receiver('hang')]);
  });
  after(async () => {
    await Promise.all([ok.close(), hang.close()]);
  });

  it('delivers to an allowed address and reports the status', async () => {
    const o = await deliver(request(`http://127.0.0.1:${ok.port}/`), { allowPrivate: true });
    expect(o).to.include({ ok: true, statusCode: 200, error: null, final: false });
    expect(ok.requests.at(-1)?.['content-type']).to.equal('application/json');
  });

  it('refuses a literal private address before connecting', async () => {
    const before = ok.requests.length;
    const o = await deliver(request(`http://127.0.0.1:${ok.port}/`), { allowPrivate: false });
    expect(o).to.include({ ok: false, final: true, statusCode: null });
    expect(o.error).to.match(/127\.0\.0\.1 .*refused/);
    expect(ok.requests.length).to.equal(before);
  });

  it('refuses a name the system resolver maps to loopback (localhost), checked in the socket lookup', async () => {
    const before = ok.requests.length;
    const o = await deliver(request(`http://localhost:${ok.port}/`), { allowPrivate: false });
    expect(o).to.include({ ok: false, final: true });
    expect(o.error).to.match(/localhost resolves to .*refused/);
    expect(ok.requests.length).to.equal(before);
  });

  it('connects to the address the injected resolver gave (the lookup checked is the one used)', async () => {
    const o = await deliver(request(`http://hooks.example.test:${ok.port}/`), { allowPrivate: true, resolve: resolveTo('127.0.0.1') });
    expect(o.ok).to.equal(true);
    expect(ok.requests.at(-1)?.host).to.equal(`hooks.example.test:${ok.port}`);
  });

  it('refuses a name with any private address among public ones', async () => {
    const mixed: Resolver = async () => [
      { address: '93.184.216.34', family: 4 },
      { address: '10.0.0.5', family: 4 },
    ];
    const o = await deliver(request(`http://hooks.example.test:${ok.port}/`), { allowPrivate: false, resolve: mixed });
    expect(o).to.include({ final: true });
    expect(o.error).to.match(/10\.0\.0\.5/);
  });

  it('times out a receiver that never answers, as a retryable failure', async () => {
    const o = await deliver(request(`http://127.0.0.1:${hang.port}/`), { allowPrivate: true, timeoutMs: 200 });
    expect(o).to.include({ ok: false, final: false, statusCode: null, error: 'timed out after 200 ms' });
    expect(o.durationMs).to.be.within(150, 2000);
  });

  it('reports a refused connection as retryable', async () => {
    // Outside the kernel's ephemeral range: no process is handed it between the check and the attempt.
    const port = await freePort();
    const o = await deliver(request(`http://127.0.0.1:${port}/`), { allowPrivate: true });
    expect(o).to.include({ ok: false, final: false, error: 'connection refused' });
  });

  it('ends an attempt when the worker shuts down', async () => {
    const controller = new AbortController();
    const pending = deliver(request(`http://127.0.0.1:${hang.port}/`), { allowPrivate: true, signal: controller.signal });
    setImmediate(() => controller.abort());
    expect((await pending).error).to.match(/aborted/);
  });

  it('never sends to a non-http URL', async () => {
    const o = await deliver(request('ftp://example.com/x'), { allowPrivate: true });
    expect(o).to.include({ ok: false, final: true });
  });
});

describe('webhooks: guards, signing, Retry-After', () => {
  it('guardedLookup answers in the form node asked for (all, or one address)', async () => {
    const lookup = guardedLookup({ allowPrivate: false, resolve: resolveTo('93.184.216.34') });
    const all = await new Promise((resolve) => lookup('x.test', { all: true }, (_e, a) => resolve(a)));
    expect(all).to.deep.equal([{ address: '93.184.216.34', family: 4 }]);
    const one = await new Promise((resolve) => lookup('x.test', {}, (_e, a, f) => resolve([a, f])));
    expect(one).to.deep.equal(['93.184.216.34', 4]);
    const v6 = await new Promise((resolve) => lookup('x.test', { family: 6 }, (e) => resolve(e?.code)));
    expect(v6).to.equal('ENOTFOUND');
  });

  it('signs per Standard Webhooks, verifiable by the standardwebhooks client', () => {
    const secret = generateSecret();
    expect(secret).to.match(/^whsec_/);
    const body = JSON.stringify({ type: 'job.completed', timestamp: new Date().toISOString(), data: { id: 'j' } });
    const headers = signWebhook(secret, 'msg_1', new Date(), body);
    expect(headers['webhook-id']).to.equal('msg_1');
    expect(new Webhook(secret).verify(body, { ...headers })).to.deep.include({ type: 'job.completed' });
    expect(() => new Webhook(secret).verify(body.replace('"j"', '"k"'), { ...headers })).to.throw();
  });

  it('reads Retry-After as seconds or an HTTP date', () => {
    expect(parseRetryAfter('3')).to.equal(3000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).to.equal(6000);
    expect(parseRetryAfter('soon')).to.equal(null);
    expect(parseRetryAfter(undefined)).to.equal(null);
  });

  it('checks URLs at submit: scheme always, addresses unless private ones are allowed', () => {
    expect(() => assertWebhookUrlAllowed('ftp://example.com/', true)).to.throw(/http and https/);
    expect(assertWebhookUrlAllowed('http://127.0.0.1:9/x', true).hostname).to.equal('127.0.0.1');
    expect(() => assertWebhookUrlAllowed('http://localhost./x', false)).to.throw(/local host names/);
    expect(assertWebhookUrlAllowed('https://hooks.example.com/x', false).hostname).to.equal('hooks.example.com');
  });
});
