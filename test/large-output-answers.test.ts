import { expect } from 'chai';
import http from 'node:http';
import type { Datatype, EnvelopeJob } from '@infer/contract';
import { decodeRecord, encodeRecord, endedJobJson, PIECEWISE_OUTPUT_BYTES, renderEndedJob, renderEndedJobPieces, type RecordOutput } from '@infer/job-store';
import { bytesJson, bytesJsonPieces } from '@infer/tensors';
import { submitBatch, waitForBatchEnd } from './helpers/batches.js';
import { wideOutputModel } from './helpers/int-graphs.js';
import { postJob } from './helpers/jobs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';

/**
 * An ended job's output is printed as JSON when it is read, on the
 * gateway's event loop: 4M FP32 values print as ~80 MB in ~1.8 s, which
 * every other request on that gateway would wait out. Past
 * PIECEWISE_OUTPUT_BYTES of output the answer is sent in pieces, each
 * printed as it is taken, with the event loop's other work between them.
 * The pieces joined are the text printed whole, byte for byte. The event
 * loop's longest hold during such an answer is held against the time a
 * whole print takes in the same run (a third of it), not against a clock.
 */
describe('ended jobs with large outputs are answered in pieces', function () {
  this.timeout(120_000);

  /** The values a piece of JSON text prints. */
  const valuesIn = (text: string): number => (text.match(/-?[0-9][0-9.e+-]*|null|true|false/g) ?? []).length;

  const bytesOf = (datatype: Exclude<Datatype, 'BYTES'>, n: number): Uint8Array => {
    const per = { FP32: 4, FP64: 8, INT64: 8, INT32: 4, INT8: 1, UINT8: 1, BOOL: 1, FP16: 2, INT16: 2, UINT16: 2, UINT32: 4, UINT64: 8 }[datatype as string] ?? 4;
    const b = new Uint8Array(n * per);
    for (let i = 0; i < b.length; i++) b[i] = (i * 37 + 11) & 0xff;
    if (datatype === 'BOOL') for (let i = 0; i < b.length; i++) b[i] = b[i]! & 1;
    if (datatype === 'FP32' && n > 0) new DataView(b.buffer).setFloat32(0, Number.NaN, true); // prints null
    return b;
  };

  it('bytesJsonPieces joined is bytesJson, for every shape and piece size', () => {
    const shapes = [[], [1], [7], [100], [3, 5], [4, 1, 6], [2, 3, 4, 5], [0], [5, 0], [1, 1, 1, 9]];
    for (const datatype of ['FP32', 'INT64', 'UINT64', 'BOOL', 'UINT8', 'FP64', 'FP16'] as const) {
      for (const shape of shapes) {
        const n = shape.reduce((a, b) => a * b, 1);
        const bytes = bytesOf(datatype, n);
        const whole = bytesJson(datatype, bytes, shape);
        for (const pieceValues of [1, 2, 3, 4, 7, 20, 1000]) {
          const pieces = [...bytesJsonPieces(datatype, bytes, shape, pieceValues)];
          expect(pieces.join(''), `${datatype} [${shape}] in pieces of ${pieceValues}`).to.equal(whole);
          // No piece prints more values than asked (unless the whole tensor fits in one).
          if (n > pieceValues) for (const piece of pieces) expect(valuesIn(piece), `${datatype} [${shape}] / ${pieceValues}: ${piece}`).to.be.at.most(pieceValues);
        }
      }
    }
  });

  it('renderEndedJobPieces joined is renderEndedJob: outputs, no outputs, an error, metadata', () => {
    const job: EnvelopeJob = { id: 'x', tenant: 't', created_at: 1_700_000_000_000, shapes: [[1]], metadata: { a: 'b"c' } };
    const outputs: RecordOutput[] = [
      { name: 'y', datatype: 'FP32', shape: [3, 4], bytes: bytesOf('FP32', 12) },
      { name: 'flag"s', datatype: 'BOOL', shape: [5], bytes: bytesOf('BOOL', 5) },
    ];
    const records = [
      encodeRecord('m', '1', job, { status: 'succeeded', startedAt: job.created_at + 3, completedAt: job.created_at + 9, metrics: { queue_ms: 3, inference_ms: 0.5, batch_size: 2 }, outputs }),
      encodeRecord('m', '1', job, { status: 'succeeded', startedAt: job.created_at, completedAt: job.created_at + 1, outputs: [] }),
      encodeRecord('m', '1', { ...job, webhook: 'https://example.com/h' }, { status: 'failed', startedAt: null, completedAt: job.created_at + 1, error: { code: 'inference_failed', message: 'no' } }),
    ];
    for (const record of records) {
      const whole = renderEndedJob('job-1', record);
      for (const pieceValues of [1, 5, 1000]) expect([...renderEndedJobPieces('job-1', decodeRecord(record), pieceValues)].join('')).to.equal(whole);
      // Small outputs are one string, as before.
      expect(endedJobJson('job-1', record)).to.equal(whole);
    }
    const large = encodeRecord('m', '1', job, { status: 'succeeded', startedAt: job.created_at, completedAt: job.created_at + 1, outputs: [{ name: 'y', datatype: 'UINT8', shape: [PIECEWISE_OUTPUT_BYTES + 1], bytes: bytesOf('UINT8', PIECEWISE_OUTPUT_BYTES + 1) }] });
    const answer = endedJobJson('job-1', large);
    expect(answer).to.have.property('pieces');
    expect([...(answer as { pieces: Iterable<string> }).pieces].join('')).to.equal(renderEndedJob('job-1', large));
  });

  describe('through the gateway (real Redis, real ONNX Runtime)', () => {
    // wideOutputModel(K): 16 MB of FP32 a job, values that print long (~9 characters).
    const K = 4_000_000;
    /**
     * How long printing one such output whole takes here, now (bytesJson, the print an answer in one piece
     * makes): what the longest hold of the event loop during an answer is held against, in the same run.
     */
    const wholePrintMs = (x: number): number => {
      const y = Float32Array.from({ length: K }, (_, i) => x + Math.fround(i / 7));
      const t0 = performance.now();
      bytesJson('FP32', new Uint8Array(y.buffer), [K]);
      return performance.now() - t0;
    };
    let repo: TempModelRepo;
    let p: TestPlatform;

    before(async () => {
      repo = tempModelRepo({
        wide: {
          onnx: wideOutputModel(K),
          config: { max_batch_size: 1, max_delay_ms: 1 },
        },
      });
      p = await startPlatform({ models: repo.root, env: { MAX_OUTPUT_BYTES: String(32 * 1024 * 1024) } });
    });
    after(async () => {
      await p?.close();
      repo?.remove();
    });

    /** GET a path over a raw socket: its headers, its text, and the longest the event loop of this process (the gateway's) was held meanwhile. */
    function read(pathname: string): Promise<{ headers: http.IncomingHttpHeaders; text: string; ms: number; longestHoldMs: number }> {
      return new Promise((resolve, reject) => {
        let last = performance.now();
        let longestHoldMs = 0;
        const tick = setInterval(() => {
          const now = performance.now();
          longestHoldMs = Math.max(longestHoldMs, now - last);
          last = now;
        }, 5);
        const t0 = performance.now();
        const req = http.get(`${p.baseUrl}${pathname}`, { headers: { authorization: `Bearer ${TEST_KEY}` } }, (res) => {
          const parts: Buffer[] = [];
          res.on('data', (b: Buffer) => parts.push(b));
          res.on('end', () => {
            clearInterval(tick);
            resolve({ headers: res.headers, text: Buffer.concat(parts).toString('utf8'), ms: performance.now() - t0, longestHoldMs });
          });
          res.on('error', reject);
        });
        req.on('error', (err) => {
          clearInterval(tick);
          reject(err);
        });
      });
    }

    it('answers a 16 MB output chunked, the same Job as printed whole, without holding the event loop for the whole of it', async () => {
      const { job } = await postJob(p, { model: 'wide', input: { x: [0.25] } }, { wait: 30 });
      expect(job.status).to.equal('succeeded');
      const answer = await read(`/v1/jobs/${job.id}`);
      expect(answer.headers['transfer-encoding']).to.equal('chunked');
      expect(answer.headers['content-length']).to.equal(undefined);
      const got = JSON.parse(answer.text) as { id: string; status: string; output: { y: number[] }; urls: unknown };
      expect([got.id, got.status, got.output.y.length]).to.deep.equal([job.id, 'succeeded', K]);
      expect([got.output.y[0], got.output.y[1], got.output.y[K - 1]]).to.deep.equal([Math.fround(0.25), Math.fround(0.25 + Math.fround(1 / 7)), Math.fround(0.25 + Math.fround((K - 1) / 7))]);
      // Printed whole, the event loop would be held for nearly all of the answer's time; in pieces, for a piece's.
      // HEAD: the headers alone, nothing printed.
      const head = await p.api(`/v1/jobs/${job.id}`, { method: 'HEAD' });
      expect([head.status, head.headers.get('content-type'), (await head.arrayBuffer()).byteLength]).to.deep.equal([200, 'application/json; charset=utf-8', 0]);
      const whole = wholePrintMs(0.25);
      expect(answer.longestHoldMs, `held ${answer.longestHoldMs.toFixed(0)} ms, where printing it whole takes ${whole.toFixed(0)} ms`).to.be.below(whole / 3);
    });

    it('a batch result line with a 16 MB output downloads whole, without holding the event loop for the whole of it', async () => {
      const batch = await submitBatch(p, { json: { model: 'wide', items: [{ custom_id: 'a', input: { x: [2] } }, { custom_id: 'b', input: { x: [3] } }] } });
      await waitForBatchEnd(p, batch.id, 60_000);
      const got = await read(`/v1/batches/${batch.id}/results`);
      const lines = got.text.trimEnd().split('\n').map((l) => JSON.parse(l) as { custom_id: string; status: string; output: { y: number[] } });
      expect(lines.map((l) => [l.custom_id, l.status, l.output.y.length, l.output.y[0]])).to.deep.equal([
        ['a', 'succeeded', K, 2],
        ['b', 'succeeded', K, 3],
      ]);
      const whole = wholePrintMs(2);
      expect(got.longestHoldMs, `held ${got.longestHoldMs.toFixed(0)} ms, where printing one line whole takes ${whole.toFixed(0)} ms`).to.be.below(whole / 3);
    });

    it('a Prefer: wait submit whose job ends with a large output is answered in pieces too', async () => {
      const res = await p.api('/v1/jobs', { method: 'POST', headers: { prefer: 'wait=30' }, body: JSON.stringify({ model: 'wide', input: { x: [1] } }) });
      expect(res.status).to.equal(200);
      expect(res.headers.get('content-length')).to.equal(null);
      const got = (await res.json()) as { status: string; output: { y: number[] } };
      expect([got.status, got.output.y.length, got.output.y[0]]).to.deep.equal(['succeeded', K, 1]);
    });
  });
});
