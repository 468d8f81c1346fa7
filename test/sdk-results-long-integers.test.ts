/**
 * batches.results() hands each line over parsed with JSON.parse, which
 * rounds an INT64 output past 2^53; as for jobs (answerText(job)), a line
 * that holds an integer of 16 digits or more keeps the text it was parsed
 * from, so the digits the gateway sent can be read back.
 */
import { expect } from 'chai';
import { InferClient, answerText, tensorB64 } from '@infer/sdk';
import { scalarIntModel } from './helpers/int-graphs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';

describe('sdk: batches.results() and INT64 outputs past 2^53', function () {
  this.timeout(30_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  before(async () => {
    repo = tempModelRepo({ s: { onnx: scalarIntModel(), config: { max_batch_size: 8, max_delay_ms: 1 } } });
    p = await startPlatform({ models: repo.root });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
  });

  it('a results line keeps the digits the gateway sent (as jobs do through answerText)', async () => {
    const client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
    const x = tensorB64('INT64', [], BigInt64Array.from([2n ** 60n + 1n]));
    const batch = await client.batches.create({ model: 's', items: [{ custom_id: 'big', input: { x } }] });
    await client.batches.wait(batch.id, { pollMs: 50, timeoutMs: 20_000 });
    // The gateway sends every digit: y = 2 * (2^60 + 1) = 2305843009213693954.
    const raw = await (await p.api(`/v1/batches/${batch.id}/results`)).text();
    expect(raw).to.include('"y":2305843009213693954');
    // The same job through jobs.run keeps them (answerText).
    const job = await client.jobs.run({ model: 's', input: { x } });
    expect(answerText(job)).to.include('2305843009213693954');
    // The results line as parsed is rounded (2305843009213693952); its text keeps the digits.
    const lines = [];
    for await (const line of client.batches.results(batch.id)) lines.push(line);
    expect(lines).to.have.length(1);
    expect(answerText(lines[0])).to.include('"y":2305843009213693954');
    expect(JSON.parse(answerText(lines[0])!)).to.deep.equal(lines[0]);
  });
});
