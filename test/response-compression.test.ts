import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import zlib from 'node:zlib';
import { Redis } from 'ioredis';
import { keys } from '@infer/contract';
import { PIECEWISE_OUTPUT_BYTES } from '@infer/job-store';
import { answerCoding, codingHeaders, sendPieces } from '../apps/gateway/src/http/streamed-answer.js';
import { submitBatch, waitForBatchEnd } from './helpers/batches.js';
import { wideOutputModel } from './helpers/int-graphs.js';
import { postJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { SHIPPED_MODELS, startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * Streamed answers (a batch's results file, a job whose outputs are past
 * PIECEWISE_OUTPUT_BYTES) are gzip-compressed when the request's
 * Accept-Encoding takes gzip, and say so (Content-Encoding, Vary); the
 * bytes, once decompressed, are the uncompressed answer's, byte for byte.
 * Answers of the usual size are sent as they are whatever the client
 * accepts: the hot path never pays for compression.
 */
describe('streamed answers are gzip-compressed when the client accepts it', function () {
  this.timeout(120_000);

  it('reads Accept-Encoding as RFC 9110 does: weights, *, identity, x-gzip, malformed entries', () => {
    const cases: Array<[string | string[] | undefined, 'gzip' | 'identity']> = [
      [undefined, 'identity'],
      ['', 'identity'],
      ['gzip', 'gzip'],
      ['GZip', 'gzip'],
      ['x-gzip', 'gzip'],
      ['gzip, deflate', 'gzip'], // what Node's fetch sends
      ['br', 'identity'],
      ['deflate, br', 'identity'],
      ['*', 'gzip'],
      ['*;q=0', 'identity'],
      ['gzip;q=0', 'identity'],
      ['gzip;q=0.000', 'identity'],
      ['gzip;q=0, *', 'identity'], // the explicit entry wins over *
      ['*;q=0.5, identity', 'identity'],
      ['identity;q=1, gzip;q=0.5', 'identity'],
      ['identity;q=0.5, gzip;q=0.5', 'gzip'],
      ['identity;q=0, gzip;q=0.1', 'gzip'],
      ['gzip;q=0.8, deflate', 'gzip'],
      ['gzip ; Q=1.0', 'gzip'],
      ['gzip;q=2', 'identity'], // not a qvalue: the entry is ignored
      ['gzip;q=abc', 'identity'],
      ['gzip;level=1', 'gzip'], // a parameter that is not q
      ['gzip;q=0.5, *;q=1', 'identity'], // * weighs identity too when the header does not name it
      ['gzip;q=0.5, *;q=0.5', 'gzip'],
      [['deflate', 'gzip'], 'gzip'], // the header sent twice
    ];
    for (const [header, want] of cases) expect(answerCoding(header), JSON.stringify(header)).to.equal(want);
  });

  it('sendPieces stops, and closes its pieces, when the client goes mid-answer (as it is and gzip, a slow reader too)', async () => {
    for (const coding of ['identity', 'gzip'] as const) {
      let closed = false;
      let settled: Promise<boolean> | undefined;
      let answer: http.ServerResponse | undefined;
      // Pieces without end: only the client's going can stop the answer.
      async function* endless(): AsyncGenerator<string> {
        try {
          for (let i = 0; ; i++) yield `${'x'.repeat(64 * 1024)}${i}\n`;
        } finally {
          closed = true;
        }
      }
      const server = http.createServer((_req, res) => {
        answer = res;
        res.writeHead(200, codingHeaders(coding));
        settled = sendPieces(res, endless(), coding);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const { port } = server.address() as AddressInfo;
        await new Promise<void>((resolve, reject) => {
          const req = http.get({ host: '127.0.0.1', port, path: '/' }, (res) => {
            // A slow reader: the socket's buffer fills and the writer waits on its drain; then the client goes.
            res.pause();
            waitUntil(() => answer?.writableNeedDrain, 5000, 'the answer to wait on the socket').then(() => {
              req.destroy();
              resolve();
            }, reject);
          });
          req.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(err)));
        });
        await waitUntil(() => settled !== undefined, 5000, 'the answer to start');
        expect(await settled, coding).to.equal(false);
        expect(closed, `${coding}: the pieces' generator was closed`).to.equal(true);
      } finally {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    }
  });

  describe('through the gateway (real Redis, real ONNX Runtime)', () => {
    // Just past PIECEWISE_OUTPUT_BYTES of FP32 a job (wideOutputModel), so its answer is streamed.
    const K = Math.ceil(PIECEWISE_OUTPUT_BYTES / 4) + 1000;
    let repo: TempModelRepo;
    let p: TestPlatform;

    before(async () => {
      repo = tempModelRepo({
        mlp: { from: path.join(SHIPPED_MODELS, 'mlp') },
        wide: {
          onnx: wideOutputModel(K),
          config: { max_batch_size: 4, max_delay_ms: 1 },
        },
      });
      p = await startPlatform({ models: repo.root });
    });
    after(async () => {
      await p?.close();
      repo?.remove();
    });

    interface Raw {
      status: number;
      headers: http.IncomingHttpHeaders;
      body: Buffer;
    }

    /** A request over a raw socket, so that nothing decompresses on the way: the bytes as sent. */
    function raw(method: string, pathname: string, acceptEncoding?: string): Promise<Raw> {
      return new Promise((resolve, reject) => {
        const headers: Record<string, string> = { authorization: `Bearer ${TEST_KEY}` };
        if (acceptEncoding !== undefined) headers['accept-encoding'] = acceptEncoding;
        const req = http.request(`${p.baseUrl}${pathname}`, { method, headers }, (res) => {
          const parts: Buffer[] = [];
          res.on('data', (b: Buffer) => parts.push(b));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end();
      });
    }

    it('a batch results file: gzip when accepted, the same bytes once decompressed; as it is otherwise', async () => {
      const items = Array.from({ length: 40 }, (_, r) => ({ custom_id: `r${r}`, input: { features: Array.from({ length: 64 }, (_, k) => Math.fround(Math.sin(r + k))) } }));
      items.push({ custom_id: 'bad', input: { features: [1, 2] } as never });
      const batch = await submitBatch(p, { json: { model: 'mlp', items } });
      await waitForBatchEnd(p, batch.id, 60_000);
      const url = `/v1/batches/${batch.id}/results`;

      const plain = await raw('GET', url);
      expect(plain.status).to.equal(200);
      expect(plain.headers['content-encoding']).to.equal(undefined);
      expect(plain.headers.vary).to.match(/accept-encoding/i);
      const text = plain.body.toString('utf8');
      expect(text.trimEnd().split('\n')).to.have.length(41);

      for (const accept of ['gzip', 'gzip, deflate', 'br;q=1, *;q=0.1']) {
        const packed = await raw('GET', url, accept);
        expect([packed.status, packed.headers['content-encoding'], packed.headers['content-type']], accept).to.deep.equal([200, 'gzip', 'application/x-ndjson']);
        expect(packed.headers.vary).to.match(/accept-encoding/i);
        expect(zlib.gunzipSync(packed.body).toString('utf8'), accept).to.equal(text);
        expect(packed.body.length, 'smaller than the text').to.be.below(plain.body.length / 2);
      }
      for (const accept of ['identity', 'gzip;q=0', 'br']) {
        const same = await raw('GET', url, accept);
        expect([same.headers['content-encoding'], same.body.toString('utf8')], accept).to.deep.equal([undefined, text]);
      }
      // fetch (the SDK's, the CLI's) asks for gzip and undoes it: the same text.
      const fetched = await p.api(url);
      expect([fetched.headers.get('content-encoding'), await fetched.text()]).to.deep.equal(['gzip', text]);
      // HEAD: the headers a GET would have, nothing else.
      const head = await raw('HEAD', url, 'gzip');
      expect([head.status, head.headers['content-encoding'], head.headers['content-type'], head.body.length]).to.deep.equal([200, 'gzip', 'application/x-ndjson', 0]);
    });

    it('a results download that fails before its first byte is a problem sent as it is, with no Content-Encoding', async () => {
      const batch = await submitBatch(p, { json: { model: 'mlp', items: [{ input: { features: new Array(64).fill(0.5) } }] } });
      await waitForBatchEnd(p, batch.id, 60_000);
      // The stored results go (as if by hand) while the record stays: reading the first chunk fails.
      const redis = new Redis(p.config.redisUrl);
      try {
        await redis.del(keys(p.prefix).batchResults(batch.id));
        const res = await raw('GET', `/v1/batches/${batch.id}/results`, 'gzip');
        expect(res.status).to.be.at.least(400);
        expect(res.headers['content-encoding']).to.equal(undefined);
        expect(res.headers['content-type']).to.match(/^application\/problem\+json/);
        expect(JSON.parse(res.body.toString('utf8'))).to.have.property('status', res.status);
      } finally {
        redis.disconnect();
      }
    });

    it('a job whose answer is streamed: gzip when accepted (GET, Prefer: wait, HEAD); a usual answer never', async () => {
      const { job } = await postJob(p, { model: 'wide', input: { x: [0.5] } }, { wait: 30 });
      expect(job.status).to.equal('succeeded');
      const url = `/v1/jobs/${job.id}`;
      const plain = await raw('GET', url);
      expect([plain.status, plain.headers['content-encoding'], plain.headers['transfer-encoding']]).to.deep.equal([200, undefined, 'chunked']);
      const text = plain.body.toString('utf8');
      const parsed = JSON.parse(text) as { id: string; output: { y: number[] } };
      expect([parsed.id, parsed.output.y.length, parsed.output.y[0]]).to.deep.equal([job.id, K, 0.5]);

      const packed = await raw('GET', url, 'gzip');
      expect([packed.status, packed.headers['content-encoding'], packed.headers['content-length']]).to.deep.equal([200, 'gzip', undefined]);
      expect(packed.headers.vary).to.match(/accept-encoding/i);
      expect(zlib.gunzipSync(packed.body).toString('utf8')).to.equal(text);
      expect(packed.body.length).to.be.below(plain.body.length / 2);

      const head = await raw('HEAD', url, 'gzip');
      expect([head.status, head.headers['content-encoding'], head.body.length]).to.deep.equal([200, 'gzip', 0]);

      // POST with Prefer: wait answers the same Job once it has ended, compressed the same way.
      const submitted = await new Promise<Raw>((resolve, reject) => {
        const req = http.request(
          `${p.baseUrl}/v1/jobs`,
          { method: 'POST', headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', prefer: 'wait=30', 'accept-encoding': 'gzip' } },
          (res) => {
            const parts: Buffer[] = [];
            res.on('data', (b: Buffer) => parts.push(b));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
          },
        );
        req.on('error', reject);
        req.end(JSON.stringify({ model: 'wide', input: { x: [2] } }));
      });
      expect([submitted.status, submitted.headers['content-encoding']]).to.deep.equal([200, 'gzip']);
      const waited = JSON.parse(zlib.gunzipSync(submitted.body).toString('utf8')) as { status: string; output: { y: number[] } };
      expect([waited.status, waited.output.y.length, waited.output.y[0]]).to.deep.equal(['succeeded', K, 2]);

      // A job of the usual size: one string with its Content-Length, never compressed.
      const small = await postJob(p, { model: 'mlp', input: { features: new Array(64).fill(0.25) } }, { wait: 30 });
      const got = await raw('GET', `/v1/jobs/${small.job.id}`, 'gzip');
      expect([got.status, got.headers['content-encoding'], got.headers['content-length']]).to.deep.equal([200, undefined, String(got.body.length)]);
      expect((JSON.parse(got.body.toString('utf8')) as { id: string }).id).to.equal(small.job.id);
    });

    it('a client that goes away mid-answer leaves the gateway serving', async () => {
      const { job } = await postJob(p, { model: 'wide', input: { x: [1] } }, { wait: 30 });
      // Read the first bytes of the compressed answer, then drop the connection.
      await new Promise<void>((resolve, reject) => {
        const req = http.get(`${p.baseUrl}/v1/jobs/${job.id}`, { headers: { authorization: `Bearer ${TEST_KEY}`, 'accept-encoding': 'gzip' } }, (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        });
        req.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(err)));
      });
      const again = await raw('GET', `/v1/jobs/${job.id}`, 'gzip');
      expect(again.status).to.equal(200);
      expect((JSON.parse(zlib.gunzipSync(again.body).toString('utf8')) as { output: { y: number[] } }).output.y).to.have.length(K);
    });
  });
});
