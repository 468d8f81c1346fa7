import { EventEmitter } from 'node:events';
import { expect } from 'chai';
import type { Response } from 'express';
import { Redis } from 'ioredis';
import { BatchStore, ChunkResultWriter, batchCompletedWebhook, customIdJson, failedChunkResult, renderChunkResult, renderChunkResultPieces, type BatchRecord } from '@infer/batch-store';
import { InteractiveRequests } from '../apps/gateway/src/batches/interactive-requests.js';
import { TEST_REDIS_URL, deletePrefix, uniquePrefix } from './helpers/platform.js';
import { nestedJson, toNested } from '@infer/tensors';
import { itemLabel, lineText, ndjsonLines, type RawItem } from '../apps/gateway/src/batches/ndjson-lines.js';


/** The split lines as `{label, text}` (or `{label, tooLong}`), read as the chunk builder reads them. */
async function collect(pieces: (string | Buffer)[], maxLineBytes = 1000): Promise<({ label: string; text: string } | { label: string; tooLong: number })[]> {
  async function* source() {
    for (const p of pieces) yield typeof p === 'string' ? Buffer.from(p) : p;
  }
  const out: RawItem[] = [];
  // Read each array before asking for the next: a line's bytes are valid until then.
  const texts: ({ label: string; text: string } | { label: string; tooLong: number })[] = [];
  for await (const batch of ndjsonLines(source(), maxLineBytes)) {
    out.push(...batch);
    for (const item of batch) {
      if (item.kind === 'line') texts.push({ label: itemLabel(item), text: lineText(item) });
      else if (item.kind === 'tooLong') texts.push({ label: itemLabel(item), tooLong: item.limit });
    }
  }
  return texts;
}

describe('batches: NDJSON line splitting', () => {
  it('splits lines across reads, numbers them as an editor does, skips blank lines', async () => {
    const items = await collect(['{"a":1}\n{"b"', ':2}\r\n\n  \n{"c":3}']);
    expect(items).to.deep.equal([
      { label: 'line 1', text: '{"a":1}' },
      { label: 'line 2', text: '{"b":2}\r' },
      { label: 'line 5', text: '{"c":3}' },
    ]);
  });

  it('keeps a multi-byte character split between two reads, and drops a leading BOM', async () => {
    const bytes = Buffer.from('\uFEFF{"s":"é€"}\n');
    const cut = bytes.indexOf(0x82); // inside the euro sign
    const items = await collect([bytes.subarray(0, cut), bytes.subarray(cut)]);
    expect(items).to.deep.equal([{ label: 'line 1', text: '{"s":"é€"}' }]);
    // A first line that is only a byte order mark is blank.
    expect(await collect(['\uFEFF \r\n{"a":1}\n'])).to.deep.equal([{ label: 'line 2', text: '{"a":1}' }]);
  });

  it('reports a line over the limit without keeping it, and goes on with the next', async () => {
    const long = 'x'.repeat(30);
    const items = await collect([`{"ok":1}\n${long.slice(0, 12)}`, long.slice(12), `\n{"ok":2}\n${long}`], 20);
    expect(items).to.deep.equal([
      { label: 'line 1', text: '{"ok":1}' },
      { label: 'line 2', tooLong: 20 },
      { label: 'line 3', text: '{"ok":2}' },
      { label: 'line 4', tooLong: 20 },
    ]);
  });
});

describe('batches: result rendering', () => {
  it('writes custom ids exactly as JSON.stringify does, escapes included', () => {
    const ids = [null, '', 'r1', 'é-€', 'a"b', 'a\\b', 'tab\tnl\n', '\u0000', '\u2028', '😀', '\ud800', 'x\udc00y', '\udc00\ud800'];
    for (const id of ids) expect(customIdJson(id), JSON.stringify(id)).to.equal(JSON.stringify(id));
  });

  it('renders outputs exactly as JSON.stringify(toNested(...)) does, for the job API', () => {
    const cases = [
      { data: Float32Array.from([0.1, -0, 1e-30, 3.4e38, NaN, Infinity]), shape: [2, 3], bool: false },
      { data: Float64Array.from([Math.PI, -2.5e-310]), shape: [2], bool: false },
      { data: BigInt64Array.from([1n, -9007199254740991n]), shape: [2], bool: false },
      { data: Uint8Array.from([1, 0, 1, 1]), shape: [2, 1, 2], bool: true },
      { data: Int32Array.from([7]), shape: [], bool: false },
    ];
    for (const c of cases) {
      expect(nestedJson(c.data, c.shape, c.bool)).to.equal(JSON.stringify(toNested(c.data, c.shape, c.bool)));
    }
    const rows = Float32Array.from([1, 2, 3, 4, 5, 6]);
    expect(nestedJson(rows, [3], false, 3)).to.equal(JSON.stringify(toNested(rows, [3], false, 3)));
  });
});

describe('batches: stored chunk results', () => {
  const lines = (stored: Buffer) => renderChunkResult(stored).toString().trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

  it('renders each item in order: outputs of every kind as the job API prints them, failures with their errors', () => {
    const writer = new ChunkResultWriter(100, 5, ['a', null, 'c', 'd"', 'e'], ['p', 'flag', 'n']);
    writer.fail(1, { code: 'invalid_json', message: 'line 2: nope' });
    // Rows run out of order (grouped by shape): items 4 then 0, then item 2 alone with another shape.
    writer.addRun(
      [4, 0],
      {
        p: { datatype: 'FP32', shape: [2, 2], data: Float32Array.from([0.5, NaN, -0, 3.4e38]) },
        flag: { datatype: 'BOOL', shape: [2], data: Uint8Array.from([1, 0]) },
        n: { datatype: 'INT64', shape: [2, 1], data: BigInt64Array.from([7n, -9007199254740991n]) },
      },
      true,
    );
    writer.addRun([2], { p: { datatype: 'FP32', shape: [1, 3], data: Float32Array.from([1, 2, 3]) }, flag: { datatype: 'BOOL', shape: [1], data: Uint8Array.from([1]) }, n: { datatype: 'INT64', shape: [1, 1], data: BigInt64Array.from([0n]) } }, true);
    writer.fail(3, { code: 'inference_failed', message: 'boom' });
    const got = lines(writer.encode());
    expect(got.map((l) => [l.index, l.custom_id, l.status])).to.deep.equal([
      [100, 'a', 'succeeded'],
      [101, null, 'failed'],
      [102, 'c', 'succeeded'],
      [103, 'd"', 'failed'],
      [104, 'e', 'succeeded'],
    ]);
    expect(got[0]!.output).to.deep.equal({ p: [0, Math.fround(3.4e38)], flag: false, n: [-9007199254740991] });
    expect(got[4]!.output).to.deep.equal({ p: [0.5, null], flag: true, n: [7] });
    expect(got[2]!.output).to.deep.equal({ p: [1, 2, 3], flag: true, n: [0] });
    expect(got[1]!.error).to.deep.equal({ code: 'invalid_json', message: 'line 2: nope' });
    expect(got[3]!.error).to.deep.equal({ code: 'inference_failed', message: 'boom' });
    // The text itself is the job API's: JSON.stringify of the nested outputs.
    expect(renderChunkResult(writer.encode()).toString().split('\n')[4]).to.equal('{"index":104,"custom_id":"e","status":"succeeded","output":{"p":[0.5,null],"flag":true,"n":[7]},"error":null}');
  });

  it('renders a chunk none of whose items ran, and passes NDJSON written by an older worker through', () => {
    const got = lines(failedChunkResult(0, 3, ['x', 'y', null], [{ offset: 1, error: { code: 'invalid_input', message: 'bad' } }], { code: 'worker_lost', message: 'gone' }));
    expect(got.map((l) => (l.error as { code: string }).code)).to.deep.equal(['worker_lost', 'invalid_input', 'worker_lost']);
    const legacy = Buffer.from('{"index":0}\n');
    expect(renderChunkResult(legacy)).to.equal(legacy);
  });

  it('renders a wide chunk in pieces of whole lines, about pieceChars each (one string of 2048 rows × 16384 floats would pass V8\'s longest)', () => {
    const rows = 64;
    const width = 1000;
    const writer = new ChunkResultWriter(0, rows, Array.from({ length: rows }, (_, i) => `r${i}`), ['y']);
    writer.addRun(Array.from({ length: rows }, (_, i) => i), { y: { datatype: 'FP32', shape: [rows, width], data: Float32Array.from({ length: rows * width }, (_, i) => 0.1 + i / 7) } }, true);
    const stored = writer.encode();
    const pieces = [...renderChunkResultPieces(stored, 50_000)];
    // A line is ~19 characters a value: ~19,000 a row, so about three rows a piece.
    expect(pieces.length).to.be.within(16, 32);
    for (const piece of pieces) {
      expect(piece.at(-1), 'a piece ends at a line end').to.equal(0x0a);
      expect(piece.length).to.be.below(50_000 + 25_000);
    }
    expect(Buffer.concat(pieces).equals(renderChunkResult(stored))).to.equal(true);
    expect(Buffer.concat(pieces).toString().trimEnd().split('\n').map((l) => (JSON.parse(l) as { index: number }).index)).to.deep.equal(Array.from({ length: rows }, (_, i) => i));
  });

  it('prints the line of an item with more than pieceValues output values in pieces, the same text as printed whole', () => {
    // Rows of one shape (batched) and rows of their own shapes, two outputs, a failure between them.
    const writer = new ChunkResultWriter(10, 4, ['a', null, 'c', 'd'], ['y', 'm']);
    const y = Float32Array.from({ length: 2 * 6 * 5 }, (_, i) => i / 3);
    const m = Uint8Array.from({ length: 2 * 7 }, (_, i) => i & 1);
    writer.addRun([0, 2], { y: { datatype: 'FP32', shape: [2, 6, 5], data: y }, m: { datatype: 'BOOL', shape: [2, 7], data: m } }, true);
    writer.fail(1, { code: 'inference_failed', message: 'no' });
    writer.addRun([3], { y: { datatype: 'FP32', shape: [9], data: Float32Array.from({ length: 9 }, (_, i) => -i) }, m: { datatype: 'BOOL', shape: [3], data: Uint8Array.of(1, 0, 1) } }, false);
    const stored = writer.encode();
    const whole = Buffer.concat([...renderChunkResultPieces(stored, 1 << 20, Infinity)]).toString();
    for (const pieceValues of [1, 4, 7, 12, 20]) {
      const pieces = [...renderChunkResultPieces(stored, 1 << 20, pieceValues)];
      expect(Buffer.concat(pieces).toString(), `pieces of ${pieceValues} values`).to.equal(whole);
      expect(pieces.length, `pieces of ${pieceValues} values`).to.be.greaterThan(3);
    }
    expect(whole.trimEnd().split('\n').map((l) => (JSON.parse(l) as { status: string }).status)).to.deep.equal(['succeeded', 'failed', 'succeeded', 'succeeded']);
  });
});

describe('batches: the batch store', () => {
  const prefix = uniquePrefix('bstore');
  const redis = new Redis(TEST_REDIS_URL);
  const ended: BatchRecord[] = [];
  const store = new BatchStore(redis, { prefix, resultTtlMs: 60_000, onEnded: (b) => void ended.push(b) });
  const manifest = (start: number, count: number) => ({ start, count, custom_ids: new Array<null>(count).fill(null), failures: [] });
  const create = async (id: string, webhook: string | null = null) =>
    store.create({ id, tenant: 't', model: 'mlp', version: '1', createdAt: Date.now(), metadata: null, webhook, webhookEventsFilter: webhook ? ['completed'] : [] });

  after(async () => {
    redis.disconnect();
    await deletePrefix(TEST_REDIS_URL, prefix);
  });

  it('counts a chunk written twice once, completes when sealed and every chunk ended, and tells once', async () => {
    await create('b1', 'https://example.com/hook');
    expect(await store.addChunk('b1', 0, manifest(0, 2), 0, Buffer.from([1, 2, 0, 255]))).to.equal('ok');
    expect(await store.addChunk('b1', 1, manifest(2, 1), 0, Buffer.from([9]))).to.equal('ok');
    expect(await store.startChunk('b1', Date.now())).to.equal('queued');
    // The packed inputs come back byte for byte, and go once their chunk has ended.
    expect([...(await store.chunkInputs('b1', 0))!]).to.deep.equal([1, 2, 0, 255]);
    expect(await store.finishChunk('b1', 1, 'x\n', 1, 0, Date.now())).to.equal('ok');
    expect(await store.chunkInputs('b1', 1)).to.equal(null);
    expect([...(await store.chunkInputs('b1', 0))!]).to.deep.equal([1, 2, 0, 255]);
    expect(await store.finishChunk('b1', 1, 'x\n', 1, 0, Date.now())).to.equal('duplicate');
    expect(await store.finishChunk('b1', 0, 'y\ny\n', 1, 1, Date.now())).to.equal('ok');
    expect(await redis.exists(`${prefix}:batch:{b1}:inputs`)).to.equal(0);
    expect(ended).to.have.length(0);
    expect(await store.seal('b1', Date.now())).to.equal('completed');
    expect(await store.seal('b1', Date.now())).to.equal('ended');
    expect(await store.finishChunk('b1', 0, 'y\ny\n', 1, 1, Date.now())).to.equal('ended');
    expect(ended.map((b) => [b.id, b.status, b.counts])).to.deep.equal([['b1', 'completed', { total: 3, succeeded: 2, failed: 1, canceled: 0 }]]);
    expect(batchCompletedWebhook(ended[0]!)).to.include({ tenant: 't', url: 'https://example.com/hook', type: 'batch.completed' });
    const chunks: string[] = [];
    for await (const buf of store.results((await store.get('b1'))!)) chunks.push(buf.toString());
    expect(chunks).to.deep.equal(['y\ny\n', 'x\n']);
  });

  it('after a cancel, a chunk that finishes is dropped and the counts stay final', async () => {
    ended.length = 0;
    await create('b2');
    await store.addChunk('b2', 0, manifest(0, 3), 0, Buffer.from('abc'));
    expect(await store.cancel('b2', 'other', Date.now())).to.deep.equal({ outcome: 'missing' });
    const canceled = await store.cancel('b2', 't', Date.now());
    expect(canceled.outcome).to.equal('canceled');
    // The record as the cancel left it comes with the outcome: no read after the commit.
    const record = 'record' in canceled ? canceled.record : null;
    expect(record).to.include({ id: 'b2', tenant: 't', status: 'canceled', chunks: 1, sealed: true });
    expect(record!.counts).to.deep.equal({ total: 3, succeeded: 0, failed: 0, canceled: 3 });
    // Nothing will run them: a canceled batch's inputs are freed at once.
    expect(await store.chunkInputs('b2', 0)).to.equal(null);
    expect(await store.cancel('b2', 't', Date.now())).to.deep.equal({ outcome: 'already_canceled' });
    expect(await store.finishChunk('b2', 0, 'z\n', 3, 0, Date.now())).to.equal('ended');
    expect(await store.addChunk('b2', 1, manifest(3, 1), 0, Buffer.from('d'))).to.equal('ended');
    expect(await store.chunkInputs('b2', 1)).to.equal(null);
    const b = (await store.get('b2'))!;
    expect(b.counts).to.deep.equal({ total: 3, succeeded: 0, failed: 0, canceled: 3 });
    expect(ended.map((r) => r.status)).to.deep.equal(['canceled']);
    expect(batchCompletedWebhook(ended[0]!)).to.equal(null);
  });

  it("knows whether a version has a batch not yet ended (what keeps a draining version loaded), and says yes when it cannot tell", async () => {
    await create('b3');
    await store.create({ id: 'b4', tenant: 't', model: 'mlp', version: '2', createdAt: Date.now(), metadata: null, webhook: null, webhookEventsFilter: [] });
    expect(await store.hasUnended('mlp', '1')).to.equal(true);
    expect(await store.hasUnended('mlp', '2')).to.equal(true);
    expect(await store.hasUnended('mlp', '3')).to.equal(false);
    // More running batches than it reads: it cannot say none is version 3's.
    expect(await store.hasUnended('mlp', '3', 1)).to.equal(true);
  });
});

describe('batches: interactive requests in the gateway', () => {
  it('is busy from the start of an interactive request to its end, and wakes waiting uploads', async () => {
    const requests = new InteractiveRequests();
    const res = new EventEmitter() as unknown as Response;
    let nexted = false;
    requests.track({} as never, res, () => (nexted = true));
    expect(nexted).to.equal(true);
    expect(requests.busy).to.equal(true);
    const idle = requests.whenIdle(60_000);
    (res as unknown as EventEmitter).emit('finish');
    (res as unknown as EventEmitter).emit('close');
    await idle;
    expect(requests.busy).to.equal(false);
    await requests.whenIdle(60_000);
  });
});
