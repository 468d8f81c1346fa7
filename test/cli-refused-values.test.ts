/**
 * docs/cli.md, "Output and exit codes": exit 1 when the API answered
 * with an error (`error: <detail> (code: <code>, HTTP <status>)`), exit 2 on a
 * usage error; never a stack trace. docs/api.md: a malformed
 * `Idempotency-Key` is `400 invalid_input`; `metadata` is "echoed back
 * unchanged (so its numbers must fit a double: `1e400` is a 422)".
 */
import { expect } from 'chai';
import { runCliProcess } from './helpers/cli.js';
import { InferClient } from '@infer/sdk';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';

const input = JSON.stringify({ features: new Array(64).fill(0.5) });

describe('cli: jobs submit with values the gateway refuses', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ worker: false });
  });
  after(async () => {
    await p?.close();
  });

  it('--idempotency-key with a character outside visible ASCII: a usage error (exit 2), not a stack trace or "cannot reach"', async () => {
    // '日本': undici refuses the header value (not a ByteString) with a bare TypeError.
    // 'a\u0001b': undici's UND_ERR_INVALID_ARG, which is no connection failure: the gateway is up.
    for (const key of ['日本', 'a\u0001b', 'with space']) {
      const r = await runCliProcess(p.baseUrl, ['jobs', 'submit', '-m', 'mlp', '--input', input, '--idempotency-key', key]);
      const what = `key ${JSON.stringify(key)}: exit ${r.code}, stderr:\n${r.stderr}`;
      expect(r.code, what).to.equal(2);
      expect(r.stderr, what).to.match(/^error: /);
      expect(r.stderr, what).not.to.match(/\n\s+at /);
      expect(r.stderr, what).not.to.contain('cannot reach');
      expect(r.stdout, what).to.equal('');
    }
  });

  it('--metadata \'{"a": 1e400}\' is refused (curl gets 422 invalid_input), not stored as {"a": null}', async () => {
    const direct = await p.api('/v1/jobs', { method: 'POST', body: `{"model": "mlp", "input": ${input}, "metadata": {"a": 1e400}}` });
    expect(direct.status).to.equal(422);

    const r = await runCliProcess(p.baseUrl, ['jobs', 'submit', '-m', 'mlp', '--input', input, '--metadata', '{"a": 1e400}']);
    // Not exit 0 with the job's metadata {"a": null} (JSON.parse reads 1e400 as Infinity, JSON.stringify writes it null).
    expect(r.code, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`).to.equal(2);
    expect(r.stderr).to.match(/^error: .*--metadata/);
    expect(r.stdout).to.equal('');
  });

  it('the SDK refuses both before sending, with a TypeError that says why', async () => {
    let sent = 0;
    const client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY, fetch: (u, init) => (sent++, fetch(u, init)) });
    const body = { model: 'mlp', input: JSON.parse(input) as Record<string, number[]> };
    for (const key of ['日本', '', 'x'.repeat(256)]) {
      const err = await client.jobs.create(body, { idempotencyKey: key }).then(() => undefined, (e: unknown) => e);
      expect(err, `key of ${key.length} characters`).to.be.instanceOf(TypeError);
      expect(String(err)).to.contain('idempotencyKey');
    }
    for (const value of [Infinity, -Infinity, NaN]) {
      const err = await client.jobs.create({ ...body, metadata: { a: value } }).then(() => undefined, (e: unknown) => e);
      expect(err, String(value)).to.be.instanceOf(TypeError);
      expect(String(err)).to.contain('JSON');
    }
    expect(sent).to.equal(0);
  });
});
