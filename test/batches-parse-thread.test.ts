import { expect } from 'chai';
import { silentLogger } from '@infer/logger';
import { ModelRepository, type ModelVersion } from '@infer/models';
import { DEFAULT_CHUNK_LIMITS, type BuiltChunk, type ChunkLimits } from '../apps/gateway/src/batches/chunk-builder.js';
import { buildChunks } from '../apps/gateway/src/batches/chunk-sources.js';
import { ndjsonLines } from '../apps/gateway/src/batches/ndjson-lines.js';
import { ParseThread } from '../apps/gateway/src/batches/parse-thread/parse-thread.js';
import { b64Fp32, mlpFeatures } from './helpers/batches.js';
import { SHIPPED_MODELS } from './helpers/platform.js';

/** A body as pieces cut at awkward places (inside lines, inside multi-byte characters). */
function pieces(text: string, size: number): Buffer[] {
  const bytes = Buffer.from(text);
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size));
  return out;
}

async function* stream(parts: Buffer[], failAfter = Infinity): AsyncGenerator<Buffer> {
  let n = 0;
  for (const p of parts) {
    if (n++ === failAfter) throw new Error('the client went away');
    yield p;
  }
}

const plain = (c: BuiltChunk) => ({ ...c, packed: [...c.packed] });

async function collect(source: AsyncIterable<BuiltChunk>): Promise<ReturnType<typeof plain>[]> {
  const out: ReturnType<typeof plain>[] = [];
  for await (const c of source) out.push(plain(c));
  return out;
}

describe('batches: the parse thread', function () {
  this.timeout(20_000);
  let repo: ModelRepository;
  let model: ModelVersion;
  let thread: ParseThread;
  const limits: ChunkLimits = { ...DEFAULT_CHUNK_LIMITS, maxRows: 7 };

  // Valid nested and b64 lines, and every kind of bad one, over several chunks.
  const lines: string[] = [];
  for (let i = 0; i < 40; i++) {
    if (i % 9 === 3) lines.push('{"custom_id":"bad json"');
    else if (i % 9 === 5) lines.push(JSON.stringify({ custom_id: `é${i}`, input: { features: mlpFeatures(i).slice(1) } }));
    else if (i % 2) lines.push(JSON.stringify({ custom_id: `r${i}`, input: { features: b64Fp32(mlpFeatures(i)) } }));
    else lines.push(JSON.stringify({ custom_id: `r${i}`, input: { features: mlpFeatures(i) } }));
  }
  const body = '\uFEFF' + lines.join('\r\n') + '\n\n   \n' + 'x'.repeat(300) + '\n{"input":{"features":[1,2';

  before(async () => {
    repo = await ModelRepository.load(SHIPPED_MODELS, { only: ['mlp'] });
    model = repo.resolve('mlp');
    thread = new ParseThread(silentLogger);
  });
  after(async () => {
    await thread.close();
    await repo.close();
  });

  it('builds exactly the chunks the event loop builds, in order', async () => {
    const expected = await collect(buildChunks(model, limits, ndjsonLines(stream(pieces(body, 1000)), 200)));
    expect(expected.length).to.be.greaterThan(4);
    for (const size of [1, 13, 4096, 1 << 20]) {
      expect(await collect(thread.chunks(model, limits, 200, stream(pieces(body, size)))), `pieces of ${size}`).to.deep.equal(expected);
    }
  });

  it('keeps concurrent uploads apart, and a slow reader still gets every chunk', async () => {
    const a = thread.chunks(model, limits, 200, stream(pieces(body, 50)));
    const b = thread.chunks(model, { ...limits, maxRows: 3 }, 200, stream(pieces(lines.slice(0, 10).join('\n'), 7)));
    const slow = (async () => {
      const out: ReturnType<typeof plain>[] = [];
      for await (const c of a) {
        out.push(plain(c));
        await new Promise((r) => setImmediate(r));
      }
      return out;
    })();
    const [gotA, gotB] = await Promise.all([slow, collect(b)]);
    expect(gotA).to.deep.equal(await collect(buildChunks(model, limits, ndjsonLines(stream(pieces(body, 50)), 200))));
    expect(gotB.map((c) => [c.start, c.count])).to.deep.equal([[0, 3], [3, 3], [6, 3], [9, 1]]);
  });

  it('fails the upload when its body fails, and the thread serves the next one', async () => {
    let caught: unknown;
    try {
      await collect(thread.chunks(model, limits, 200, stream(pieces(body, 100), 20)));
    } catch (err) {
      caught = err;
    }
    expect((caught as Error | undefined)?.message).to.equal('the client went away');
    expect(await collect(thread.chunks(model, limits, 200, stream(pieces(lines.slice(0, 2).join('\n'), 64))))).to.have.length(1);
  });

  it('a reader that stops early leaves nothing behind, and a thread that is stopped fails its uploads and comes back', async () => {
    for await (const chunk of thread.chunks(model, limits, 200, stream(pieces(body, 64)))) {
      expect(chunk.start).to.equal(0);
      break;
    }
    const running = collect(thread.chunks(model, limits, 200, (async function* () {
      yield Buffer.from(lines[0]! + '\n');
      // Holds the upload open while the thread goes away.
      await thread.close();
      yield Buffer.from(lines[1]! + '\n');
    })()));
    let caught: unknown;
    try {
      await running;
    } catch (err) {
      caught = err;
    }
    expect((caught as Error | undefined)?.message).to.match(/parse thread exited/);
    expect((caught as { status?: number }).status).to.equal(503);
    expect(await collect(thread.chunks(model, limits, 200, stream(pieces(lines.slice(0, 2).join('\n'), 64))))).to.have.length(1);
  });
});
