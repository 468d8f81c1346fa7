import { expect } from 'chai';
import { decodeBase64Into } from '@infer/tensors';
import { ModelRepository, type ModelVersion } from '@infer/models';
import { ChunkBuilder } from '../apps/gateway/src/batches/chunk-builder.js';
import { LineScanner, scanTargets } from '../apps/gateway/src/batches/line-scanner.js';
import type { RawItem } from '../apps/gateway/src/batches/ndjson-lines.js';
import { FIXTURE_MODELS, SHIPPED_MODELS } from './helpers/platform.js';

/** A deterministic stream of doubles (xorshift), for property checks. */
function random(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

function fp32Scanner(per: number, datatype: 'FP32' | 'FP64' = 'FP32') {
  const data = datatype === 'FP32' ? new Float32Array(per * 2) : new Float64Array(per * 2);
  const scanner = new LineScanner(scanTargets([{ name: 'x', datatype, shape: [per], data }]));
  const scan = (line: string) => {
    const bytes = Buffer.from(`${line}\n`);
    return scanner.scan(bytes, 0, bytes.length - 1, 1);
  };
  return { data, scan, row: () => Array.from(data.subarray(per, 2 * per)) };
}

describe('batches: the fast line scanner', () => {
  it('reads numbers in every JSON spelling to exactly the float32 and float64 JSON.parse gives', () => {
    const next = random(7);
    const spellings: string[] = ['0', '-0', '1', '-1', '0.5', '1e3', '1E+3', '2.5e-3', '-0.0', '123456789012345678901234', '1e-30', '4.9e-324', '3.4028234663852886e38', '1.401298464324817e-45'];
    for (let i = 0; i < 4000; i++) {
      const v = (next() - 0.5) * 10 ** Math.floor(next() * 40 - 20);
      spellings.push(String(v), String(Math.fround(v)), v.toExponential(Math.floor(next() * 20)), v.toFixed(Math.floor(next() * 20)));
    }
    for (const datatype of ['FP32', 'FP64'] as const) {
      const { scan, row } = fp32Scanner(4, datatype);
      const cast = datatype === 'FP32' ? Math.fround : (x: number) => x;
      for (let i = 0; i < spellings.length; i += 4) {
        const four = [0, 1, 2, 3].map((k) => spellings[(i + k) % spellings.length]!);
        const line = `{"input":{"x":[${four.join(', ')}]}}`;
        expect(scan(line), line).to.equal(null);
        expect(row().map((x) => Object.is(x, -0) ? '-0' : x), line).to.deep.equal(
          (JSON.parse(line) as { input: { x: number[] } }).input.x.map((x) => cast(x)).map((x) => (Object.is(x, -0) ? '-0' : x)),
        );
      }
    }
  });

  it('reads a float32 right on a rounding boundary as JSON.parse then Float32Array do', () => {
    // 1 + 2^-24 is halfway between two float32s; the digits after it decide.
    const { scan, row } = fp32Scanner(3);
    const line = '{"input":{"x":[1.000000059604644775390625, 1.0000000596046447753906250001, 1.0000000596046447753906249999]}}';
    expect(scan(line)).to.equal(null);
    expect(row()).to.deep.equal(Array.from(new Float32Array([1.000000059604644775390625, 1.0000000596046447753906250001, 1.0000000596046447753906249999])));
  });

  it('keeps the custom id, any key order and whitespace, and a b64 tensor', () => {
    const { scan, row } = fp32Scanner(2);
    expect(scan(' { "input" : { "x" : [ 1 , 2 ] } , "custom_id" : "é-1" } \r')).to.equal('é-1');
    expect(row()).to.deep.equal([1, 2]);
    const b64 = Buffer.from(new Float32Array([0.25, -3]).buffer).toString('base64');
    expect(scan(`{"custom_id":"b","input":{"x":{"shape":[2],"b64":"${b64}","datatype":"FP32"}}}`)).to.equal('b');
    expect(row()).to.deep.equal([0.25, -3]);
  });

  it('hands every line it does not fully understand to the general path', () => {
    const { scan } = fp32Scanner(2);
    const good = Buffer.from(new Float32Array([1, 2]).buffer).toString('base64');
    const nan = Buffer.from(new Float32Array([1, NaN]).buffer).toString('base64');
    const lines = [
      '{"input":{"x":[1,2]}} x', // trailing text
      '{"input":{"x":[1,2]}', // unclosed
      '{"input":{"x":[1,2,3]}}', // wrong length
      '{"input":{"x":[[1,2]]}}', // wrong rank
      '{"input":{"x":[1,"2"]}}',
      '{"input":{"x":[01,2]}}', // leading zero
      '{"input":{"x":[1.,2]}}',
      '{"input":{"x":[.5,2]}}',
      '{"input":{"x":[+1,2]}}',
      '{"input":{"x":[1,2e]}}',
      '{"input":{"x":[1,NaN]}}',
      '{"input":{"x":[1,1e39]}}', // overflows FP32
      '{"input":{"x":[1,2]},"input":{"x":[1,2]}}', // duplicate key
      '{"input":{"x":[1,2],"x":[1,2]}}',
      '{"input":{"x":[1,2],"y":[1,2]}}', // unknown input
      '{"input":{}}',
      '{"input":{"x":[1,2]},"extra":1}',
      '{"custom_id":null,"input":{"x":[1,2]}}',
      '{"custom_id":"a\\"b","input":{"x":[1,2]}}', // an escape
      `{"custom_id":"${'c'.repeat(1000)}","input":{"x":[1,2]}}`, // over the custom id limit
      '{"custom_id":"a"}',
      '[1,2]',
      '\uFEFF{"input":{"x":[1,2]}}',
      `{"input":{"x":{"datatype":"FP64","shape":[2],"b64":"${good}"}}}`,
      `{"input":{"x":{"datatype":"FP32","shape":[3],"b64":"${good}"}}}`,
      `{"input":{"x":{"datatype":"FP32","shape":[2],"b64":"${nan}"}}}`,
      `{"input":{"x":{"datatype":"FP32","shape":[2],"b64":"${good.replace(/=+$/, '')}"}}}`, // unpadded
      `{"input":{"x":{"datatype":"FP32","shape":[2],"b64":"${good.slice(0, 4)}-${good.slice(5)}"}}}`, // URL-safe alphabet
      `{"input":{"x":{"datatype":"FP32","shape":[2],"b64":"${good}","data":[1,2]}}}`,
      `{"input":{"x":{"datatype":"FP32","b64":"${good}"}}}`,
    ];
    for (const line of lines) expect(scan(line), line).to.equal(undefined);
  });

  it('stops at the end of the bytes: a line cut off inside a number, a string or a tensor', () => {
    const data = new Float32Array(4);
    const scanner = new LineScanner(scanTargets([{ name: 'x', datatype: 'FP32', shape: [2], data }]));
    const b64 = Buffer.from(new Float32Array([1, 2]).buffer).toString('base64');
    const whole = `{"custom_id":"a","input":{"x":[1.25,-2e-3]}}`;
    const typed = `{"input":{"x":{"datatype":"FP32","shape":[2],"b64":"${b64}"}}}`;
    for (const line of [whole, typed]) {
      // The last line of a body may have no newline: its bytes end the buffer.
      for (let cut = 1; cut < line.length; cut++) {
        const bytes = Buffer.from(line.slice(0, cut));
        expect(scanner.scan(bytes, 0, bytes.length, 0), line.slice(0, cut)).to.equal(undefined);
      }
      const bytes = Buffer.from(line);
      expect(scanner.scan(bytes, 0, bytes.length, 1)).to.not.equal(undefined);
    }
  });
});

describe('batches: strict base64 decoding', () => {
  it('decodes what Buffer decodes, and refuses non-standard or mis-sized text', () => {
    const next = random(3);
    for (let n = 0; n < 40; n++) {
      const bytes = Buffer.from(Array.from({ length: n }, () => Math.floor(next() * 256)));
      const text = Buffer.from(bytes.toString('base64'));
      const out = new Uint8Array(n + 3);
      expect(decodeBase64Into(text, 0, text.length, out, 3, n), `${n} bytes`).to.equal(true);
      expect(Buffer.from(out.subarray(3)).equals(bytes)).to.equal(true);
      if (n > 0) expect(decodeBase64Into(text, 0, text.length, out, 0, n + 1)).to.equal(false);
    }
    const out = new Uint8Array(8);
    for (const bad of ['AAA', 'AA=A', 'A===', '-_AA', 'AA AA', 'AAAA====']) {
      const text = Buffer.from(bad);
      expect(decodeBase64Into(text, 0, text.length, out, 0, Buffer.from(bad, 'base64').length), bad).to.equal(false);
    }
  });
});

/**
 * The chunk a set of NDJSON lines packs to (custom ids, failures, packed
 * bytes) must be the same whether each line went through the scanner or
 * through JSON.parse: the scanner is only a shortcut.
 */
describe('batches: packing with and without the scanner', () => {
  let repo: ModelRepository;
  let fixtures: ModelRepository;
  before(async () => {
    repo = await ModelRepository.load(SHIPPED_MODELS, { only: ['mlp'] });
    fixtures = await ModelRepository.load(FIXTURE_MODELS);
  });
  after(async () => {
    await repo.close();
    await fixtures.close();
  });

  const pack = (model: ModelVersion, lines: string[], viaText: boolean) => {
    const builder = new ChunkBuilder(model);
    lines.forEach((text, i) => {
      let item: RawItem;
      if (viaText) {
        const source = Buffer.from(`${text}\n`);
        item = { kind: 'line', line: i + 1, source, start: 0, end: source.length - 1 };
      } else {
        let value: unknown;
        try {
          value = JSON.parse(text);
        } catch {
          value = text; // unparsable lines are checked by the text path's own test
        }
        item = { kind: 'element', index: i, value };
      }
      builder.add(item);
    });
    const { packed, failures, custom_ids, rows } = builder.take();
    return { packed: [...packed], codes: failures.map((f) => [f.offset, f.error.code]), custom_ids, rows };
  };

  it('gives the same chunk for valid and invalid lines of the shipped MLP', () => {
    const model = repo.resolve('mlp');
    const next = random(11);
    const row = () => Array.from({ length: 64 }, () => Math.fround(next() * 2 - 1));
    const b64 = (xs: number[]) => Buffer.from(new Float32Array(xs).buffer).toString('base64');
    const lines = [
      JSON.stringify({ custom_id: 'a', input: { features: row() } }),
      JSON.stringify({ input: { features: { datatype: 'FP32', shape: [64], b64: b64(row()) } } }),
      JSON.stringify({ custom_id: 'c', input: { features: row().slice(1) } }),
      JSON.stringify({ custom_id: 'd', input: { features: [...row().slice(1), 1e39] } }),
      JSON.stringify({ custom_id: 'e', input: { features: row().map((x) => x * 1e-7) } }),
      `{"custom_id":"f","input":{"features":[${row().map((x) => x.toExponential(3)).join(',')}]}}`,
      JSON.stringify({ custom_id: 'g', input: { other: row() } }),
      JSON.stringify({ custom_id: 'h', input: { features: { datatype: 'FP32', shape: [64], b64: b64(row()).slice(4) } } }),
    ];
    const fast = pack(model, lines, true);
    const slow = pack(model, lines, false);
    expect(fast).to.deep.equal(slow);
    expect(fast.rows).to.equal(4);
    expect(fast.codes.map(([o]) => o)).to.deep.equal([2, 3, 6, 7]);
  });

  it('gives the same chunk for the fixtures: integer, scalar and variable-length inputs', () => {
    const cases: [string, string[]][] = [
      ['scale-int', ['{"input":{"x":[1,2,3]}}', '{"input":{"x":[1.5,2,3]}}', '{"input":{"x":[1,2,3,4]}}']],
      ['scalar-double', ['{"input":{"v":2.5}}', '{"input":{"v":[2.5]}}']],
      ['seq-sum', ['{"input":{"seq":[1,2,3]}}', '{"input":{"seq":[4]}}', '{"input":{"seq":[]}}']],
    ];
    for (const [name, lines] of cases) {
      const model = fixtures.resolve(name);
      expect(pack(model, lines, true), name).to.deep.equal(pack(model, lines, false));
    }
  });
});
