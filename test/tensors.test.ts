import { liftBase64, liftedBytes, restorePlaceholders } from '@infer/tensors';
import { expect } from 'chai';
import type { Datatype, TensorSpec } from '@infer/contract';
import { AppError } from '@infer/errors';
import {
  decodeBase64Into,
  decodeEncoded,
  decodeInput,
  encodeTensor,
  fromBytes,
  instanceSlice,
  shapeKey,
  stack,
  toBytes,
  toNested,
  type TensorBytes,
  type TensorData,
} from '@infer/tensors';

type Dt = Exclude<Datatype, 'BYTES'>;

const spec = (datatype: Datatype, shape: number[], name = 'x'): TensorSpec => ({ name, datatype, shape });
const b64Of = (data: TensorData) => Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64');
const plain = (data: TensorData): Array<number | bigint> => Array.from(data as ArrayLike<number | bigint>);

/** Expect a 422 invalid_input AppError whose message names the input and matches `why`. */
function expectInvalid(fn: () => unknown, why?: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'expected decodeInput to throw').to.be.instanceOf(AppError);
  const err = thrown as AppError;
  expect(err.status).to.equal(422);
  expect(err.code).to.equal('invalid_input');
  expect(err.message).to.include('"x"');
  if (why) expect(err.message).to.match(why);
}

/** For each datatype: JSON values of one [3] instance and the typed array they must become. */
const TABLE: Array<{ dt: Dt; json: Array<number | boolean>; typed: TensorData }> = [
  { dt: 'BOOL', json: [true, false, true], typed: Uint8Array.of(1, 0, 1) },
  { dt: 'UINT8', json: [0, 255, 7], typed: Uint8Array.of(0, 255, 7) },
  { dt: 'INT8', json: [-128, 127, 0], typed: Int8Array.of(-128, 127, 0) },
  { dt: 'UINT16', json: [0, 65535, 2], typed: Uint16Array.of(0, 65535, 2) },
  { dt: 'INT16', json: [-32768, 32767, 1], typed: Int16Array.of(-32768, 32767, 1) },
  { dt: 'UINT32', json: [0, 4294967295, 4], typed: Uint32Array.of(0, 4294967295, 4) },
  { dt: 'INT32', json: [-2147483648, 2147483647, 3], typed: Int32Array.of(-2147483648, 2147483647, 3) },
  { dt: 'INT64', json: [-(2 ** 53 - 1), 2 ** 53 - 1, 5], typed: BigInt64Array.of(-(2n ** 53n - 1n), 2n ** 53n - 1n, 5n) },
  { dt: 'UINT64', json: [0, 2 ** 53 - 1, 6], typed: BigUint64Array.of(0n, 2n ** 53n - 1n, 6n) },
  { dt: 'FP32', json: [0.5, -1.25, 3e38], typed: Float32Array.of(0.5, -1.25, 3e38) },
  { dt: 'FP64', json: [0.1, 1e300, -2], typed: Float64Array.of(0.1, 1e300, -2) },
];

describe('tensors: decodeInput', () => {
  describe('each datatype in each of the three forms', () => {
    for (const { dt, json, typed } of TABLE) {
      it(dt, () => {
        const s = spec(dt, [3]);
        const forms: Array<[string, unknown]> = [
          ['nested', json],
          ['data', { datatype: dt, shape: [3], data: json }],
          ['b64', { datatype: dt, shape: [3], b64: b64Of(typed) }],
        ];
        for (const [form, value] of forms) {
          const t = decodeInput(value, s);
          expect(t.datatype, form).to.equal(dt);
          expect(t.shape, form).to.deep.equal([3]);
          expect(t.data, form).to.be.instanceOf(typed.constructor);
          expect(plain(t.data), form).to.deep.equal(plain(typed));
        }
      });
    }

    it('FP16 as raw bits in b64, and as numbers rounded to the nearest half in the JSON forms', () => {
      const bits = Uint16Array.of(0x3c00, 0xc000, 0x0000); // 1, -2, 0
      const t = decodeInput({ datatype: 'FP16', shape: [3], b64: b64Of(bits) }, spec('FP16', [3]));
      expect(plain(t.data)).to.deep.equal(plain(bits));
      expect(plain(decodeInput([1, -2, 0], spec('FP16', [3])).data)).to.deep.equal(plain(bits));
      // 1 + 2^-11 is halfway between 1 and the next half: ties go to even (1); 65504 is the largest half.
      expect(plain(decodeInput({ datatype: 'FP16', shape: [3], data: [1 + 2 ** -11, 65504, -0] }, spec('FP16', [3])).data)).to.deep.equal([0x3c00, 0x7bff, 0x8000]);
      expectInvalid(() => decodeInput([1, 65520, 0], spec('FP16', [3])), /overflows FP16/);
      expectInvalid(() => decodeInput([1, true, 0], spec('FP16', [3])), /finite number/);
      expectInvalid(() => decodeInput({ datatype: 'FP16', shape: [3], b64: b64Of(Uint16Array.of(0x3c00, 0x7c00, 0)) }, spec('FP16', [3])), /finite/);
    });

    it('refuses BYTES (string) tensors', () => {
      expectInvalid(() => decodeInput(['a'], spec('BYTES', [1])), /BYTES/);
    });
  });

  describe('shapes', () => {
    it('infers a nested array shape and fills variable dimensions from it', () => {
      const t = decodeInput(
        [
          [1, 2, 3],
          [4, 5, 6],
        ],
        spec('FP32', [2, -1]),
      );
      expect(t.shape).to.deep.equal([2, 3]);
      expect(plain(t.data)).to.deep.equal([1, 2, 3, 4, 5, 6]);
      expect(decodeInput({ datatype: 'FP32', shape: [2, 1], data: [1, 2] }, spec('FP32', [2, -1])).shape).to.deep.equal([2, 1]);
    });

    it('takes a scalar as a bare value, and not as a one-element array', () => {
      const t = decodeInput(2.5, spec('FP64', []));
      expect(t.shape).to.deep.equal([]);
      expect(plain(t.data)).to.deep.equal([2.5]);
      expect(plain(decodeInput({ datatype: 'FP64', shape: [], data: [2.5] }, spec('FP64', [])).data)).to.deep.equal([2.5]);
      expect(plain(decodeInput(true, spec('BOOL', [])).data)).to.deep.equal([1]);
      expectInvalid(() => decodeInput([2.5], spec('FP64', [])), /shape/);
      expectInvalid(() => decodeInput(2.5, spec('FP64', [1])), /shape/);
    });

    it('refuses a wrong rank, a wrong fixed dimension, a ragged array and a non-tensor', () => {
      expectInvalid(() => decodeInput([1, 2], spec('FP32', [3])), /\[2\].*\[3\]/);
      expectInvalid(() => decodeInput([[1, 2, 3]], spec('FP32', [3])), /shape/);
      expectInvalid(() => decodeInput([[1], [2], [3], [4]], spec('FP32', [3, -1])), /shape/);
      expectInvalid(
        () =>
          decodeInput(
            [
              [1, 2],
              [3, 4, 5],
            ],
            spec('FP32', [2, -1]),
          ),
        /ragged/,
      );
      expectInvalid(() => decodeInput([[1, 2], 3], spec('FP32', [2, -1])), /ragged/);
      expectInvalid(() => decodeInput('1,2,3', spec('FP32', [3])), /not a tensor/);
      expectInvalid(() => decodeInput(null, spec('FP32', [3])));
    });

    it('checks the typed forms: shape, length, fields', () => {
      const s = spec('FP32', [3]);
      expectInvalid(() => decodeInput({ datatype: 'FP32', shape: [4], data: [1, 2, 3, 4] }, s), /shape/);
      expectInvalid(() => decodeInput({ datatype: 'FP32', shape: [3], data: [1, 2] }, s), /2 values/);
      expectInvalid(() => decodeInput({ datatype: 'FP32', shape: 3, data: [1, 2, 3] }, s), /shape/);
      expectInvalid(() => decodeInput({ datatype: 'FP32', shape: [-3], data: [1, 2, 3] }, s), /shape/);
      expectInvalid(() => decodeInput({ datatype: 'FP32', shape: [3] }, s), /exactly one/);
      expectInvalid(() => decodeInput({ datatype: 'FP32', shape: [3], data: [1, 2, 3], b64: b64Of(Float32Array.of(1, 2, 3)) }, s), /exactly one/);
      expectInvalid(() => decodeInput({ datatype: 'FP32', shape: [3], data: [1, 2, 3], extra: true }, s), /unknown field "extra"/);
      expectInvalid(() => decodeInput({ datatype: 'FP32', shape: [3], data: '1,2,3' }, s), /flat array/);
      expectInvalid(() => decodeInput({ datatype: 'FP32', shape: [3], data: [[1], [2], [3]] }, s), /finite number/);
    });
  });

  describe('values', () => {
    it('refuses the wrong datatype in the typed forms, and names that do not exist', () => {
      expectInvalid(() => decodeInput({ datatype: 'FP64', shape: [3], data: [1, 2, 3] }, spec('FP32', [3])), /FP64.*FP32/);
      expectInvalid(() => decodeInput({ datatype: 'float32', shape: [3], data: [1, 2, 3] }, spec('FP32', [3])), /datatype/);
      expectInvalid(() => decodeInput({ shape: [3], data: [1, 2, 3] }, spec('FP32', [3])), /datatype/);
    });

    it('refuses strings, nulls and booleans where numbers are expected', () => {
      for (const bad of ['1', null, true, {}, [1]]) {
        expectInvalid(() => decodeInput([0, bad, 0], spec('FP32', [3])), /index 1/);
        expectInvalid(() => decodeInput({ datatype: 'INT32', shape: [3], data: [0, bad, 0] }, spec('INT32', [3])), /index 1/);
      }
    });

    it('refuses non-finite floats, and finite doubles that overflow FP32', () => {
      for (const bad of [NaN, Infinity, -Infinity]) expectInvalid(() => decodeInput([0, 0, bad], spec('FP64', [3])), /finite/);
      expectInvalid(() => decodeInput([0, 1e39, 0], spec('FP32', [3])), /overflows FP32/);
      expectInvalid(() => decodeInput({ datatype: 'FP32', shape: [3], data: [0, -1e39, 0] }, spec('FP32', [3])), /overflows FP32/);
      expect(plain(decodeInput([0, 1e39, 0], spec('FP64', [3])).data)).to.deep.equal([0, 1e39, 0]);
      for (const bad of [NaN, Infinity, -Infinity]) {
        expectInvalid(() => decodeInput({ datatype: 'FP32', shape: [3], b64: b64Of(Float32Array.of(0, bad, 0)) }, spec('FP32', [3])), /finite/);
        expectInvalid(() => decodeInput({ datatype: 'FP64', shape: [3], b64: b64Of(Float64Array.of(0, 0, bad)) }, spec('FP64', [3])), /finite/);
      }
    });

    it('refuses integers that are fractional or out of range for their datatype', () => {
      const cases: Array<[Dt, number]> = [
        ['INT64', 2.5],
        ['INT64', 2 ** 60],
        ['UINT64', -1],
        ['INT32', 2 ** 31],
        ['INT32', 0.1],
        ['UINT32', -1],
        ['INT16', 32768],
        ['UINT16', 65536],
        ['INT8', -129],
        ['UINT8', 256],
      ];
      for (const [dt, v] of cases) {
        expectInvalid(() => decodeInput([0, v, 0], spec(dt, [3])), new RegExp(`not a ${dt} integer`));
        expectInvalid(() => decodeInput({ datatype: dt, shape: [3], data: [0, v, 0] }, spec(dt, [3])), new RegExp(`not a ${dt} integer`));
      }
    });

    it('takes only booleans for BOOL, and only bytes 0 and 1 in b64', () => {
      for (const bad of [1, 0, 'true', null]) expectInvalid(() => decodeInput([true, bad, false], spec('BOOL', [3])), /boolean/);
      expectInvalid(() => decodeInput({ datatype: 'BOOL', shape: [3], data: [1, 0, 1] }, spec('BOOL', [3])), /boolean/);
      expectInvalid(() => decodeInput({ datatype: 'BOOL', shape: [3], b64: Buffer.of(1, 2, 0).toString('base64') }, spec('BOOL', [3])), /0 or 1/);
    });
  });

  describe('b64', () => {
    const s = spec('FP32', [3]);
    it('refuses the wrong byte length', () => {
      expectInvalid(() => decodeInput({ datatype: 'FP32', shape: [3], b64: b64Of(Float32Array.of(1, 2)) }, s), /8 bytes.*12/);
      expectInvalid(() => decodeInput({ datatype: 'FP32', shape: [3], b64: b64Of(Float64Array.of(1, 2, 3)) }, s), /24 bytes/);
    });

    it('refuses what is not standard, padded base64', () => {
      const good = b64Of(Float32Array.of(1, 2, 3));
      for (const bad of ['!!!!' + good.slice(4), good.replace(/=+$/, '').slice(0, -1), good.replaceAll('+', '-').replaceAll('/', '_') + '-_', 'AAAA AAAA AAAA AAAA', 12]) {
        expectInvalid(() => decodeInput({ datatype: 'FP32', shape: [3], b64: bad }, s), /base64/);
      }
    });

    it('reads bytes that sit at an unaligned offset', () => {
      // Buffer.from(base64) may land at any offset in Node's pool; decoding must copy rather than misread.
      for (let i = 0; i < 8; i++) {
        const values = Float64Array.of(i + 0.5, -i, 1e-300);
        const t = decodeInput({ datatype: 'FP64', shape: [3], b64: b64Of(values) }, spec('FP64', [3]));
        expect(plain(t.data)).to.deep.equal(plain(values));
      }
    });
  });

  it('encodeTensor → decodeEncoded gives back the same tensor for every datatype', () => {
    for (const { dt, json, typed } of TABLE) {
      const s = spec(dt, [3]);
      const t = decodeInput(json, s);
      const enc = encodeTensor(t);
      expect(enc).to.deep.equal({ datatype: dt, shape: [3], b64: b64Of(typed) });
      const back = decodeEncoded(enc, s);
      expect(back.shape).to.deep.equal([3]);
      expect(plain(back.data), dt).to.deep.equal(plain(typed));
    }
  });
});

describe('tensors: toNested', () => {
  it('renders a flat array as nested rows of the shape', () => {
    expect(toNested(Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3])).to.deep.equal([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    expect(toNested(Float32Array.of(1, 2, 3, 4, 5, 6), [3, 2, 1])).to.deep.equal([[[1], [2]], [[3], [4]], [[5], [6]]]);
  });

  it('renders a scalar as a bare value', () => {
    expect(toNested(Float64Array.of(4.5), [])).to.equal(4.5);
    expect(toNested(Uint8Array.of(1), [], true)).to.equal(true);
  });

  it('renders BOOL as booleans and 64-bit integers as numbers', () => {
    expect(toNested(Uint8Array.of(1, 0, 1), [3], true)).to.deep.equal([true, false, true]);
    expect(toNested(Uint8Array.of(1, 0, 1), [3])).to.deep.equal([1, 0, 1]);
    const ints = toNested(BigInt64Array.of(-6n, 0n, 2n ** 41n), [3]) as unknown[];
    expect(ints).to.deep.equal([-6, 0, 2 ** 41]);
    for (const v of ints) expect(v).to.be.a('number');
  });

  it('reads from an offset (one instance of a batched output), and handles empty dimensions', () => {
    expect(toNested(Float32Array.of(1, 2, 3, 4, 5, 6), [3], false, 3)).to.deep.equal([4, 5, 6]);
    expect(toNested(Float32Array.of(), [2, 0])).to.deep.equal([[], []]);
  });
});

describe('tensors: stack and instanceSlice', () => {
  const t = (shape: number[], values: number[]): TensorBytes => ({ datatype: 'FP32', shape, bytes: toBytes(Float32Array.from(values)) });

  it('stacks instances along a new first dimension, in order', () => {
    const s = stack([t([2, 2], [1, 2, 3, 4]), t([2, 2], [5, 6, 7, 8]), t([2, 2], [9, 10, 11, 12])]);
    expect(s.datatype).to.equal('FP32');
    expect(s.shape).to.deep.equal([3, 2, 2]);
    expect(plain(s.data)).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    // A scalar instance stacks to [n].
    expect(stack([t([], [1]), t([], [2])]).shape).to.deep.equal([2]);
    // 64-bit integers stack too.
    const ints = stack([
      { datatype: 'INT64', shape: [2], bytes: toBytes(BigInt64Array.of(1n, 2n)) },
      { datatype: 'INT64', shape: [2], bytes: toBytes(BigInt64Array.of(3n, 4n)) },
    ]);
    expect(plain(ints.data)).to.deep.equal([1n, 2n, 3n, 4n]);
  });

  it('views instances that lie back to back in one buffer (one envelope) without copying them', () => {
    const packed = toBytes(Float32Array.of(1, 2, 3, 4, 5, 6));
    const s = stack([0, 1, 2].map((k) => ({ datatype: 'FP32' as const, shape: [2], bytes: packed.subarray(k * 8, k * 8 + 8) })));
    expect(s.data.buffer).to.equal(packed.buffer);
    expect(plain(s.data)).to.deep.equal([1, 2, 3, 4, 5, 6]);
    // Apart, or not in order: copied into a tensor of their own.
    const apart = stack([packed.subarray(8, 16), packed.subarray(0, 8)].map((bytes) => ({ datatype: 'FP32' as const, shape: [2], bytes })));
    expect(apart.data.buffer).to.not.equal(packed.buffer);
    expect(plain(apart.data)).to.deep.equal([3, 4, 1, 2]);
  });

  it('refuses to stack nothing, or instances that differ in size or datatype', () => {
    expect(() => stack([])).to.throw();
    expect(() => stack([t([2], [1, 2]), t([3], [1, 2, 3])])).to.throw(/differ/);
    expect(() => stack([t([2], [1, 2]), { datatype: 'INT32', shape: [2], bytes: toBytes(Int32Array.of(1, 2)) }])).to.throw(/differ/);
  });

  it('slices instance k out of a batched output', () => {
    const data = Float32Array.of(1, 2, 3, 4, 5, 6);
    expect(instanceSlice(data, [2, 3], 0)).to.deep.equal({ offset: 0, shape: [3] });
    expect(instanceSlice(data, [2, 3], 1)).to.deep.equal({ offset: 3, shape: [3] });
    expect(instanceSlice(data, [3, 1, 2], 2)).to.deep.equal({ offset: 4, shape: [1, 2] });
    expect(instanceSlice(Float32Array.of(), [0, 4], 0)).to.deep.equal({ offset: 0, shape: [4] });
    // Round trip: stack, then slice each instance back out.
    const parts = [t([3], [1, 2, 3]), t([3], [4, 5, 6])];
    const s = stack(parts);
    parts.forEach((part, k) => {
      const { offset, shape } = instanceSlice(s.data, s.shape, k);
      expect(toNested(s.data, shape, false, offset)).to.deep.equal(plain(fromBytes('FP32', part.bytes)));
    });
  });

  it('shapeKey is equal exactly for instances that may share a stacked tensor', () => {
    const a = [t([3, 48, 100], []), t([2], [])];
    expect(shapeKey(a)).to.equal(shapeKey([t([3, 48, 100], []), t([2], [])]));
    expect(shapeKey(a)).not.to.equal(shapeKey([t([3, 48, 192], []), t([2], [])]));
    expect(shapeKey([t([3, 4], [])])).not.to.equal(shapeKey([t([34], [])]));
    expect(shapeKey([t([12], [])])).not.to.equal(shapeKey([t([1, 2], [])]));
  });
});

describe('tensors: liftBase64 (long base64 decoded from the body bytes)', () => {
  const image = Buffer.from(Float32Array.from({ length: 3000 }, (_, i) => i / 7).buffer);
  const b64 = image.toString('base64');

  it('decodes a long "b64" member from the bytes and leaves a placeholder that resolves to the same bytes', () => {
    const body = Buffer.from(JSON.stringify({ model: 'm', input: { x: { datatype: 'FP32', shape: [3000], b64 } } }));
    const lifted = liftBase64(body);
    expect(lifted.bytes).to.have.length(1);
    expect(lifted.text.length).to.be.below(200);
    const parsed = JSON.parse(lifted.text) as { input: { x: { b64: unknown } } };
    const bytes = liftedBytes(parsed.input.x.b64, lifted) as Uint8Array;
    expect(Buffer.from(bytes).equals(image)).to.equal(true);
    expect(bytes.byteOffset % 8).to.equal(0);
  });

  it('leaves short, unpadded, escaped or non-base64 values to JSON.parse', () => {
    const cases = [
      JSON.stringify({ b64: b64.slice(0, 100) }),
      JSON.stringify({ b64: b64.slice(0, -2) + '!!' }),
      JSON.stringify({ b64: b64.slice(0, 2000) + '\n' + b64.slice(2000) }),
      JSON.stringify({ b64: b64.slice(1) }),
    ];
    for (const text of cases) {
      const lifted = liftBase64(Buffer.from(text));
      expect(lifted.bytes, text.slice(0, 40)).to.have.length(0);
      expect(lifted.text).to.equal(text);
    }
  });

  it('puts the original text back where a lifted member is not a tensor (metadata), and ignores forged placeholders', () => {
    const body = { input: { x: { b64 } }, metadata: { b64, forged: '\u0000abc:0' } };
    const lifted = liftBase64(Buffer.from(JSON.stringify(body)));
    expect(lifted.bytes).to.have.length(2);
    const parsed = JSON.parse(lifted.text) as typeof body & { input: { x: { b64: unknown } } };
    parsed.input.x.b64 = liftedBytes(parsed.input.x.b64, lifted) as string;
    restorePlaceholders(parsed, lifted);
    expect(parsed.metadata).to.deep.equal(body.metadata);
    expect(liftedBytes('\u0000abc:0', lifted)).to.equal('\u0000abc:0');
  });
});

describe('tensors: decodeBase64Into (strict base64 by way of Node\'s lenient decoder)', () => {
  // The oracle: RFC 4648 §4 by regular expression, then Node's decoder on text known to be standard.
  const STANDARD = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
  const oracle = (text: string): Buffer | null => (STANDARD.test(text) ? Buffer.from(text, 'base64') : null);
  // Everything Node's decoder skips, stops at or reads another way.
  const STRAYS = ['=', '-', '_', ' ', '\n', '!', '"', '\\', '\u00e9', '\u0000', 'A'];
  let seed = 7;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };

  /** Decode `text` placed between other bytes (as in a body), into a slot of a larger buffer. */
  const decode = (text: string, want: number): Buffer | null => {
    const src = Buffer.from(`{"b64":"${text}"}`, 'latin1');
    const dest = Buffer.alloc(want + 16, 0xee);
    const ok = decodeBase64Into(new Uint8Array(src.buffer, src.byteOffset, src.length), 8, 8 + text.length, dest, 8, want);
    if (!ok) return null;
    expect(dest.subarray(0, 8).every((b) => b === 0xee) && dest.subarray(8 + want).every((b) => b === 0xee), 'writes outside its slot').to.equal(true);
    return dest.subarray(8, 8 + want);
  };

  it('agrees with a strict decoder on valid texts and on every kind of stray character, around its string-slice boundary too', () => {
    for (const size of [0, 1, 2, 3, 100, 49_151, 49_152, 49_153, 110_592]) {
      const bytes = Buffer.from(Array.from({ length: size }, () => random(256)));
      const good = bytes.toString('base64');
      expect(decode(good, size), `valid, ${size} bytes`).to.deep.equal(bytes);
      if (good.length === 0) continue;
      for (let k = 0; k < 40; k++) {
        // Replace one character, at the slice boundary (65,536 characters), near the end, or anywhere.
        const where = [65_535, 65_536, good.length - 1, good.length - 3, random(good.length)][k % 5]!;
        if (where >= good.length) continue;
        const stray = STRAYS[random(STRAYS.length)]!;
        const text = good.slice(0, where) + stray + good.slice(where + 1);
        const expected = oracle(text);
        const want = text.length % 4 === 0 ? (text.length / 4) * 3 - (text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0) : size;
        const got = decode(text, want);
        expect(got === null ? null : Buffer.from(got), `${JSON.stringify(stray)} at ${where} of ${good.length}`).to.deep.equal(expected && expected.length === want ? expected : null);
      }
    }
  });

  it('refuses a wrong length, and a destination too small for the bytes', () => {
    const good = Buffer.from('abcdef').toString('base64');
    expect(decode(good, 5)).to.equal(null);
    expect(decode(good.slice(0, -1), 6)).to.equal(null);
    const src = Buffer.from(good);
    expect(decodeBase64Into(src, 0, src.length, new Uint8Array(5), 0, 6)).to.equal(false);
    expect(decodeBase64Into(src, 0, src.length, new Uint8Array(8), 3, 6)).to.equal(false);
  });
});
