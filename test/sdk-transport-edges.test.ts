/**
 * The SDK's transport as a user meets it against
 * gateways and proxies (stub servers): Retry-After in its forms, aborts
 * during a retry pause, and NDJSON results as they arrive in pieces.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { InferApiError, InferClient, parseNdjson } from '@infer/sdk';
import { waitUntil } from './helpers/wait.js';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void;

async function stub(handler: Handler): Promise<{ url: string; requests: () => number; close: () => void }> {
  let n = 0;
  const server = http.createServer((req, res) => {
    n++;
    req.resume();
    handler(req, res, n);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests: () => n,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

const problem = (status: number, code: string) =>
  JSON.stringify({ type: `https://infer.dev/problems/${code}`, title: 'x', status, detail: `a ${code}`, code });

describe('sdk: Retry-After', function () {
  this.timeout(20_000);

  it('an HTTP-date Retry-After is read as the seconds until then', async () => {
    const at = new Date(Date.now() + 10_000).toUTCString();
    const s = await stub((_q, res) => res.writeHead(503, { 'content-type': 'application/problem+json', 'retry-after': at }).end(problem(503, 'queue_full')));
    try {
      const client = new InferClient({ baseUrl: s.url, apiKey: 'k' });
      const err = (await client.jobs.create({ model: 'mlp', input: { x: [1] } }).catch((e: unknown) => e)) as InferApiError;
      expect(err).to.be.instanceOf(InferApiError);
      expect(err.retryAfter).to.be.within(8, 11);
      expect(s.requests()).to.equal(1); // a POST without a key: never retried
    } finally {
      s.close();
    }
  });

  it('a Retry-After that is neither delay-seconds nor an HTTP-date ("1.5", "-1") is not read as 0 (retry at once)', async () => {
    // RFC 9110 delay-seconds is 1*DIGIT. parseRetryAfter hands anything else to Date.parse,
    // which V8 reads leniently: "1.5" is 5 Jan 2001, "-1" 1 Jan 2001, both long past: 0 s.
    for (const value of ['1.5', '-1']) {
      const s = await stub((_q, res) => res.writeHead(503, { 'content-type': 'application/problem+json', 'retry-after': value }).end(problem(503, 'unavailable')));
      try {
        const client = new InferClient({ baseUrl: s.url, apiKey: 'k' });
        const err = (await client.jobs.create({ model: 'mlp', input: { x: [1] } }).catch((e: unknown) => e)) as InferApiError;
        expect(err).to.be.instanceOf(InferApiError);
        expect(err.retryAfter, `retryAfter for Retry-After: ${value}`).to.not.equal(0);
      } finally {
        s.close();
      }
    }
  });

  it('aborting the signal during a Retry-After pause rejects at once with its reason, and sends nothing more', async () => {
    const s = await stub((_q, res) => res.writeHead(429, { 'content-type': 'application/problem+json', 'retry-after': '20' }).end(problem(429, 'rate_limited')));
    try {
      const client = new InferClient({ baseUrl: s.url, apiKey: 'k' });
      const controller = new AbortController();
      const call = client.jobs.get('j1', { signal: controller.signal }).catch((e: unknown) => e);
      await waitUntil(() => s.requests() === 1, 5000, 'the first request');
      const reason = new Error('stop');
      const t0 = Date.now();
      controller.abort(reason);
      expect(await call).to.equal(reason);
      expect(Date.now() - t0).to.be.below(1000);
      expect(s.requests()).to.equal(1);
    } finally {
      s.close();
    }
  });
});

describe('sdk: NDJSON results as they arrive', function () {
  this.timeout(20_000);

  it('parses lines split mid-character and mid-line, CRLF endings, a BOM and no final newline', async () => {
    const text = '\uFEFF{"index":0,"custom_id":"é😀"}\r\n\r\n{"index":1,"custom_id":"b"}\r\n{"index":2}';
    const bytes = new TextEncoder().encode(text);
    // One byte at a time: every split there is.
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (const b of bytes) c.enqueue(new Uint8Array([b]));
        c.close();
      },
    });
    const got: unknown[] = [];
    for await (const line of parseNdjson(body)) got.push(line);
    expect(got).to.deep.equal([{ index: 0, custom_id: 'é😀' }, { index: 1, custom_id: 'b' }, { index: 2 }]);
  });

  it('breaking out of batches.results() closes the connection; a connection dropped mid-line rejects after the whole lines', async () => {
    let closed = 0;
    let drop = false;
    const s = await stub((_q, res, _n) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.on('close', () => closed++);
      if (drop) {
        res.write('{"index":0}\n{"ind');
        setImmediate(() => res.socket?.destroy());
        return;
      }
      let i = 0;
      const t = setInterval(() => res.write(`{"index":${i++}}\n`), 5);
      res.on('close', () => clearInterval(t));
    });
    try {
      const client = new InferClient({ baseUrl: s.url, apiKey: 'k' });
      let n = 0;
      for await (const _ of client.batches.results('b1')) if (++n === 3) break;
      await waitUntil(() => closed === 1, 5000, 'the server to see the results request closed');
      drop = true;
      const got: unknown[] = [];
      const err = await (async () => {
        for await (const line of client.batches.results('b1')) got.push(line);
      })().catch((e: unknown) => e);
      expect(got).to.deep.equal([{ index: 0 }]);
      expect(err).to.be.instanceOf(TypeError); // undici's "terminated", which the CLI reports as a dropped connection
    } finally {
      s.close();
    }
  });
});
