import { expect } from 'chai';
import { InferApiError, InferClient, halfBits, tensorB64 } from '@infer/sdk';
import { halvesToFloats } from '@infer/tensors';
import { ElemType, encodeModel, node, valueInfo } from '../scripts/lib/onnx-builder.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';

type Dt = Parameters<typeof tensorB64>[0];

/** The values the b64 bytes of `datatype` hold, as numbers. */
function decoded(datatype: Dt, b64: string): number[] {
  const bytes = Buffer.from(b64, 'base64');
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  switch (datatype) {
    case 'INT8':
      return Array.from(new Int8Array(ab));
    case 'UINT8':
      return Array.from(new Uint8Array(ab));
    case 'INT16':
      return Array.from(new Int16Array(ab));
    case 'UINT16':
      return Array.from(new Uint16Array(ab));
    case 'INT32':
      return Array.from(new Int32Array(ab));
    case 'UINT32':
      return Array.from(new Uint32Array(ab));
    case 'INT64':
      return Array.from(new BigInt64Array(ab), Number);
    case 'UINT64':
      return Array.from(new BigUint64Array(ab), Number);
    case 'FP16':
      return Array.from(halvesToFloats(new Uint16Array(ab)));
    default:
      throw new Error(`not used here: ${datatype}`);
  }
}

/**
 * tensorB64 (docs/sdk.md "Jobs": the SDK's way to build the b64 form) takes
 * "any other array of numbers" and converts it. The API refuses an integer
 * its datatype cannot hold, or a fraction for an integer type (docs/api.md
 * "Tensors": 422), so the helper must either refuse such a value too or
 * carry it exactly: never send other bytes than the value it was given.
 */
describe('sdk: tensorB64 never changes a value on the way', () => {
  it('refuses (or keeps exactly) integers out of range for their datatype and fractions for integer types', () => {
    const cases: Array<[Dt, number[]]> = [
      ['INT8', [200]],
      ['INT8', [-129]],
      ['UINT8', [-1]],
      ['UINT8', [256]],
      ['INT16', [40000]],
      ['UINT16', [-1]],
      ['INT32', [2 ** 31]],
      ['INT32', [1.5]],
      ['UINT32', [-1]],
      ['UINT32', [2 ** 32]],
      ['UINT64', [-1]],
      ['FP16', [0.5]],
    ];
    const changed: string[] = [];
    for (const [datatype, values] of cases) {
      let b64: string;
      try {
        b64 = tensorB64(datatype, [values.length], values).b64;
      } catch (err) {
        expect(err, `${datatype} ${values}`).to.be.instanceOf(Error);
        continue;
      }
      const sent = decoded(datatype, b64);
      if (JSON.stringify(sent) !== JSON.stringify(values)) changed.push(`${datatype} ${JSON.stringify(values)} sent as ${JSON.stringify(sent)}`);
    }
    expect(changed).to.deep.equal([]);
  });

  it('throws for each kind of value its datatype cannot hold, naming the value', () => {
    expect(() => tensorB64('INT8', [2], [1, 200])).to.throw(TypeError, /INT8 holds integers from -128 to 127; value 1 is 200/);
    expect(() => tensorB64('INT32', [1], [1.5])).to.throw(TypeError, /value 0 is 1.5/);
    expect(() => tensorB64('INT64', [1], [2 ** 60])).to.throw(TypeError, /pass a bigint/);
    expect(() => tensorB64('BOOL', [1], [2])).to.throw(TypeError, /BOOL/);
    // What they can hold goes through exactly, 64-bit values past 2^53 as bigints.
    expect(decoded('INT8', tensorB64('INT8', [2], [-128, 127]).b64)).to.deep.equal([-128, 127]);
    const big = Buffer.from(tensorB64('INT64', [1], [2n ** 62n + 1n]).b64, 'base64');
    expect(big.readBigInt64LE(0)).to.equal(2n ** 62n + 1n);
    expect([...Buffer.from(tensorB64('BOOL', [3], [true, false, true]).b64, 'base64')]).to.deep.equal([1, 0, 1]);
    expect([...Buffer.from(tensorB64('BOOL', [2], [0, 1]).b64, 'base64')]).to.deep.equal([0, 1]);
  });

  it('rounds FP16 numbers to the nearest half, ties to even, and takes a Uint16Array as raw bits', () => {
    const cases: Array<[number, number]> = [
      [0.5, 0x3800],
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65519.99, 0x7bff],
      [65520, 0x7c00],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000],
      [3 * 2 ** -25, 0x0002],
      [2 ** -14, 0x0400],
      [1 + 2 ** -11, 0x3c00],
      [1 + 3 * 2 ** -11, 0x3c02],
      [-0, 0x8000],
    ];
    for (const [v, bits] of cases) expect(halfBits(v), String(v)).to.equal(bits);
    expect(halfBits(NaN) & 0x7c00).to.equal(0x7c00);
    // Every finite half, as a number, comes back to its own bits.
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const values = halvesToFloats(all);
    for (let i = 0; i < 65536; i++) if (Number.isFinite(values[i]!) && !Object.is(values[i], -0)) expect(halfBits(values[i]!), `0x${i.toString(16)}`).to.equal(i);
    expect(decoded('FP16', tensorB64('FP16', [2], [0.5, 1.25]).b64)).to.deep.equal([0.5, 1.25]);
    expect(decoded('FP16', tensorB64('FP16', [1], new Uint16Array([0x3800])).b64)).to.deep.equal([0.5]);
  });

  describe('end to end: the job runs on the value the client gave, or not at all', function () {
    this.timeout(60_000);
    let repo: TempModelRepo;
    let p: TestPlatform;
    let client: InferClient;
    before(async () => {
      const onnx = encodeModel({
        name: 'int8_identity',
        inputs: [valueInfo('x', ElemType.INT8, ['batch', 3])],
        outputs: [valueInfo('y', ElemType.INT8, ['batch', 3])],
        nodes: [node('Identity', ['x'], ['y'])],
      });
      repo = tempModelRepo({ i8: { onnx, config: { max_batch_size: 4, max_delay_ms: 2 } } });
      p = await startPlatform({ models: repo.root });
      client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
    });
    after(async () => {
      await p?.close();
      repo?.remove();
    });

    it('INT8 200: 422 as a nested array, and through tensorB64 never a job that ran on -56', async () => {
      const values = [200, 0, 1];
      const nested = await client.jobs.run({ model: 'i8', input: { x: values } }).then(
        () => null,
        (err: unknown) => err,
      );
      expect(nested).to.be.instanceOf(InferApiError);
      expect((nested as InferApiError).status).to.equal(422);
      let tensor;
      try {
        tensor = tensorB64('INT8', [3], values);
      } catch (err) {
        expect(err).to.be.instanceOf(Error);
        return;
      }
      const job = await client.jobs.run({ model: 'i8', input: { x: tensor } }).catch((err: unknown) => err);
      if (job instanceof InferApiError) {
        expect(job.status).to.equal(422);
        return;
      }
      const ended = job as { status: string; output: { y: number[] } | null };
      expect(ended.status === 'succeeded' ? ended.output!.y : values, 'the model ran on other values than the client gave').to.deep.equal(values);
    });
  });
});
