import http from 'node:http';
import v8 from 'node:v8';
import vm from 'node:vm';
import zlib from 'node:zlib';
import { expect } from 'chai';
import type { Batch } from '@infer/contract';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';

/**
 * docs/api.md (Batches, NDJSON): "A line over the per-line limit fails the
 * same way … its bytes are dropped as they arrive, so a 20 MB line costs
 * the gateway no more memory than the limit". docs/batches.md: "a million
 * lines never sit in the gateway's memory, and there is no body limit, only
 * a per-line one".
 */

const features = new Array<number>(64).fill(0.5);
const GOOD_LINE = `{"custom_id":"ok","input":{"features":[${features}]}}\n`;

/** A gzip body, built a MiB at a time (the test never holds the inflated bytes): `head`, `mib` MiB of spaces, `tail`. */
async function gzipBomb(head: string, mib: number, tail: string): Promise<Buffer> {
  const z = zlib.createGzip({ level: 9 });
  const out: Buffer[] = [];
  z.on('data', (d: Buffer) => out.push(d));
  const done = new Promise((resolve) => z.on('end', resolve));
  const spaces = Buffer.alloc(1024 * 1024, 0x20);
  z.write(head);
  for (let i = 0; i < mib; i++) if (!z.write(spaces)) await new Promise((resolve) => z.once('drain', resolve));
  z.end(tail);
  await done;
  return Buffer.concat(out);
}

/**
 * The most memory of this process (the in-process gateway) in byte buffers
 * while `run` runs: `process.memoryUsage().arrayBuffers`, the live
 * ArrayBuffers (a body's pieces are Buffers), which unlike RSS does not
 * stay up once freed memory is kept by the allocator. RSS is reported too.
 */
async function peakMemory<T>(run: () => Promise<T>): Promise<{ value: T; base: number; peak: number; rssBase: number; rssPeak: number }> {
  gc();
  gc();
  const base = process.memoryUsage().arrayBuffers;
  const rssBase = process.memoryUsage().rss;
  let peak = base;
  let rssPeak = rssBase;
  const sample = () => {
    const m = process.memoryUsage();
    peak = Math.max(peak, m.arrayBuffers);
    rssPeak = Math.max(rssPeak, m.rss);
  };
  const timer = setInterval(sample, 10);
  try {
    const value = await run();
    sample();
    return { value, base, peak, rssBase, rssPeak };
  } finally {
    clearInterval(timer);
  }
}

const MiB = 1024 * 1024;

// A full collection before each measurement, so that what an earlier test left for the collector does not count.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

for (const parseThread of ['true', 'false']) {
  describe(`batches: an NDJSON upload's memory stays bounded (BATCH_PARSE_THREAD=${parseThread})`, function () {
    this.timeout(120_000);
    let p: TestPlatform;

    before(async () => {
      p = await startPlatform({ worker: false, env: { MAX_BODY_BYTES: String(64 * 1024), BATCH_PARSE_THREAD: parseThread } });
    });
    after(async () => {
      await p?.close();
    });

    it('an uncompressed 768 MiB upload streamed in (no bomb: a big legitimate file): memory does not grow with the body', async () => {
      const url = new URL(p.baseUrl);
      const piece = Buffer.alloc(MiB, 0x20);
      const { value: answer, base, peak, rssBase, rssPeak } = await peakMemory(
        () =>
          new Promise<{ status: number; body: string }>((resolve, reject) => {
            const req = http.request({
              host: url.hostname,
              port: url.port,
              path: '/v1/batches?model=mlp',
              method: 'POST',
              headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/x-ndjson', 'transfer-encoding': 'chunked' },
            });
            req.on('response', (res) => {
              let body = '';
              res.on('data', (c: Buffer) => (body += c.toString()));
              res.on('end', () => resolve({ status: res.statusCode!, body }));
            });
            req.on('error', reject);
            req.write(GOOD_LINE);
            let sent = 0;
            const pump = () => {
              while (sent < 768) {
                sent++;
                if (!req.write(piece)) return void req.once('drain', pump);
              }
              req.end('x\n');
            };
            pump();
          }),
      );
      expect(answer.status, answer.body).to.equal(202);
      const grewMiB = Math.round((peak - base) / MiB);
      const rssMiB = Math.round((rssPeak - rssBase) / MiB);
      expect(grewMiB, `the gateway held ${grewMiB} MiB more of buffers (RSS grew by ${rssMiB} MiB, from ${Math.round(rssBase / MiB)} MiB) reading a 768 MiB stream`).to.be.below(256);
    });

    it('a 1 MB gzip bomb inflating to 1 GiB in one line: 202, the line fails as an item, and the gateway does not hold the inflated GiB', async () => {
      const bomb = await gzipBomb(GOOD_LINE, 1024, 'x\n');
      expect(bomb.length).to.be.below(2 * MiB);
      const { value: res, base, peak, rssBase, rssPeak } = await peakMemory(() =>
        p.api('/v1/batches?model=mlp', { method: 'POST', headers: { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' }, body: bomb }),
      );
      const batch = (await res.json()) as Batch;
      expect(res.status, JSON.stringify(batch)).to.equal(202);
      expect(batch.request_counts).to.include({ total: 2, failed: 1 });
      const grewMiB = Math.round((peak - base) / MiB);
      // The per-line limit is 64 KiB; reading the inflated bytes a piece at a time needs a few MiB. Allow 256.
      const rssMiB = Math.round((rssPeak - rssBase) / MiB);
      expect(grewMiB, `the gateway held ${grewMiB} MiB more of buffers (RSS grew by ${rssMiB} MiB, from ${Math.round(rssBase / MiB)} MiB) reading a ${Math.round(bomb.length / 1024)} KiB upload`).to.be.below(256);
    });
  });
}
