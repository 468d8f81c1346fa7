import { expect } from 'chai';
import type { BatchResultLine } from '@infer/contract';
import { mlpFeatures, readResults, submitBatch, waitForBatchEnd } from './helpers/batches.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

const LIMIT = 4096;

/** A valid MLP item padded with spaces after the object to exactly `bytes` bytes (JSON allows trailing whitespace). */
function itemOf(i: number, bytes: number): string {
  const text = JSON.stringify({ custom_id: `c${i}`, input: { features: mlpFeatures(i) } });
  if (Buffer.byteLength(text) > bytes) throw new Error('item too long for the test');
  return text + ' '.repeat(bytes - Buffer.byteLength(text));
}

/**
 * NDJSON lines right at the per-line limit (MAX_BODY_BYTES). A line
 * is its bytes up to the newline; a CRLF file's carriage return and line 1's
 * byte order mark are not part of the item (the splitter and JSON.parse both
 * drop them), so a line whose item is exactly the limit must not fail as
 * "longer than the limit" only because the file has Windows line ends or a BOM.
 */
describe('NDJSON lines exactly at the per-line limit', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  before(async () => {
    p = await startPlatform({ env: { MAX_BODY_BYTES: String(LIMIT) } });
  });
  after(async () => {
    await p?.close();
  });

  const run = async (body: string): Promise<BatchResultLine[]> => {
    const batch = await submitBatch(p, { ndjson: body });
    await waitForBatchEnd(p, batch.id);
    return readResults(p, batch.id);
  };
  const summary = (lines: BatchResultLine[]) => lines.map((l) => [l.index, l.status, l.error?.message.replace(/ \(.*$/, '') ?? null]);

  it('LF: a line of exactly the limit runs, one byte over fails; the last line without newline likewise', async () => {
    const lines = await run(`${itemOf(0, LIMIT)}\n${itemOf(1, LIMIT + 1)}\n${itemOf(2, LIMIT)}`);
    expect(summary(lines)).to.deep.equal([
      [0, 'succeeded', null],
      [1, 'failed', `line 2: longer than the limit of ${LIMIT} bytes a line`],
      [2, 'succeeded', null],
    ]);
  });

  it('CRLF: an item of exactly the limit followed by \\r\\n runs like its LF twin', async () => {
    const lines = await run(`${itemOf(0, LIMIT)}\r\n${itemOf(1, LIMIT - 1)}\r\n`);
    expect(summary(lines)).to.deep.equal([
      [0, 'succeeded', null],
      [1, 'succeeded', null],
    ]);
  });

  it('BOM: line 1 of exactly the limit after a byte order mark runs like its twin without one', async () => {
    const lines = await run(`\uFEFF${itemOf(0, LIMIT)}\n${itemOf(1, LIMIT)}\n`);
    expect(summary(lines)).to.deep.equal([
      [0, 'succeeded', null],
      [1, 'succeeded', null],
    ]);
  });
});
