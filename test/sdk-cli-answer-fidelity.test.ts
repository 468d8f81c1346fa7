/**
 * The SDK and the CLI: what they hand on must be what the gateway answered,
 * and what they send must be what the caller gave.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InferApiError, InferClient, answerText, type Batch } from '@infer/sdk';
import { indentJsonText } from '../apps/cli/src/output.js';
import { batchProgress } from '../apps/cli/src/progress.js';
import type { CliIo } from '../apps/cli/src/io.js';
import { runCliProcess, collected } from './helpers/cli.js';
import { scalarIntModel } from './helpers/int-graphs.js';
import { mlpFeatures } from './helpers/batches.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { REPO_ROOT, startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';

const int64b64 = (v: bigint) => ({ datatype: 'INT64', shape: [], b64: Buffer.from(BigInt64Array.from([v]).buffer).toString('base64') });

describe('sdk/cli: the CLI prints the answer with the digits the gateway sent', function () {
  this.timeout(60_000);
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

  // docs/api.md (Tensors): "64-bit integers become JSON numbers with all their digits". docs/cli.md: jobs are
  // printed as JSON "so | jq works"; nothing says the CLI changes a value. y = 2 * (2^60 + 1) = 2^61 + 2.
  it('jobs submit --wait and jobs get print an INT64 output past 2^53 with all its digits (not rounded to a double)', async () => {
    const input = JSON.stringify({ x: int64b64(2n ** 60n + 1n) });
    const submitted = await runCliProcess(p.baseUrl, ['jobs', 'submit', '-m', 's', '--input', input, '--wait', '--timeout', '20']);
    expect(submitted.code, submitted.stderr).to.equal(0);
    const id = /"id": "([^"]+)"/.exec(submitted.stdout)?.[1];
    expect(id, submitted.stdout).to.be.a('string');
    // The gateway's own answer, byte for byte in the output.
    const raw = await (await p.api(`/v1/jobs/${id}`)).text();
    expect(raw).to.include('"y":2305843009213693954');
    expect(submitted.stdout, 'jobs submit --wait').to.match(/"y": 2305843009213693954\b/);
    const got = await runCliProcess(p.baseUrl, ['jobs', 'get', id!]);
    expect(got.code, got.stderr).to.equal(0);
    expect(got.stdout, 'jobs get').to.match(/"y": 2305843009213693954\b/);
    // Laid out as every other answer is: the same JSON as the SDK's parse, two spaces an indent.
    const client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
    const job = await client.jobs.get(id!);
    expect(got.stdout.replace('2305843009213693954', '2305843009213694000')).to.equal(`${JSON.stringify(job, null, 2)}\n`);
  });

  it('the SDK keeps the text of such an answer (answerText), and of no other', async () => {
    const client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
    const big = await client.jobs.run({ model: 's', input: { x: int64b64(2n ** 60n + 1n) } as never });
    expect(answerText(big)).to.include('"y":2305843009213693954');
    expect(JSON.parse(answerText(big)!)).to.deep.equal(JSON.parse(JSON.stringify(big)));
    const small = await client.jobs.run({ model: 's', input: { x: int64b64(21n) } as never });
    expect(small.output).to.deep.include({ y: 42 });
    expect(answerText(small)).to.equal(undefined);
    expect(Object.keys(big), 'nothing enumerable added').to.deep.equal(Object.keys(small));
  });
});

describe('sdk/cli: indentJsonText lays JSON text out as JSON.stringify(value, null, 2) does', () => {
  it('for nested, empty and escaped values, and for text with spaces of its own', () => {
    const values: unknown[] = [
      { a: 1, b: [1, 2, { c: 'x"y,:{[' }], d: {}, e: [], f: null, g: 'é\\n', h: true, i: -1.5e-7 },
      [],
      {},
      [[[]], [{}]],
      'text',
      { nested: { deeper: { deepest: [1, [2, [3]]] } } },
    ];
    for (const v of values) expect(indentJsonText(JSON.stringify(v)), JSON.stringify(v)).to.equal(JSON.stringify(v, null, 2));
    expect(indentJsonText(' { "a" : [ 1 , 2 ] ,\n "b" : { } } ')).to.equal(JSON.stringify({ a: [1, 2], b: {} }, null, 2));
  });
});

describe('sdk/cli: batch progress goes to stderr', () => {
  /** A stream that says it is a terminal, as cli-progress wants one, recording what is written. */
  function fakeTerminal(isTTY: boolean): NodeJS.WriteStream & { text: string } {
    const stream = {
      text: '',
      isTTY,
      columns: 120,
      write(chunk: string) {
        stream.text += chunk;
        return true;
      },
      cursorTo: () => true,
      clearLine: () => true,
      clearScreenDown: () => true,
      moveCursor: () => true,
      on: () => stream,
      removeListener: () => stream,
    };
    return stream as unknown as NodeJS.WriteStream & { text: string };
  }
  const batch = { id: 'b1', status: 'running', request_counts: { total: 4, succeeded: 1, failed: 0, canceled: 0 } } as Batch;

  it('a bar on stderr when stderr is a terminal, nothing on stdout (which keeps only the final JSON)', () => {
    const io = { stdout: fakeTerminal(true), stderr: fakeTerminal(true), stdin: process.stdin } as CliIo & { stdout: { text: string }; stderr: { text: string } };
    const progress = batchProgress(io);
    progress.update(batch);
    progress.update({ ...batch, status: 'completed', request_counts: { total: 4, succeeded: 4, failed: 0, canceled: 0 } });
    progress.stop();
    expect(io.stdout.text).to.equal('');
    expect(io.stderr.text).to.match(/b1 \[.*\] 100% \| 4\/4 \| completed/);
  });

  it('plain lines on stderr when stderr is not a terminal, though stdout is', () => {
    const io = { stdout: fakeTerminal(true), stderr: fakeTerminal(false), stdin: process.stdin } as CliIo & { stdout: { text: string }; stderr: { text: string } };
    const progress = batchProgress(io);
    progress.update(batch);
    progress.stop();
    expect(io.stdout.text).to.equal('');
    expect(io.stderr.text).to.match(/^batch b1 running: 1\/4 done/);
  });
});

describe('sdk/cli: results from something that is not the gateway', function () {
  this.timeout(30_000);
  let server: http.Server | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    server?.close();
    server = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  // A --url that is a web server or a captive proxy answers 200 with an HTML page. `batch status` against it
  // exits 1 (`invalid_response`: "is <url> the platform's gateway?"); `batch results` should not save the
  // page as the batch's results and exit 0.
  it('batch results --output of a 200 text/html answer exits 1 and writes no results file; the SDK says invalid_response', async () => {
    server = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>Welcome to nginx!</body></html>\n'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const id = '3b1d0000-0000-4000-8000-000000000001';

    const status = await runCliProcess(url, ['batch', 'status', id]);
    expect(status.code, 'batch status (control)').to.equal(1);
    expect(status.stderr).to.match(/invalid_response/);

    dir = mkdtempSync(path.join(os.tmpdir(), 'sdkcli-'));
    const out = path.join(dir, 'results.ndjson');
    const results = await runCliProcess(url, ['batch', 'results', id, '--output', out]);
    expect({ code: results.code, fileWritten: existsSync(out) }, results.stderr).to.deep.equal({ code: 1, fileWritten: false });

    const client = new InferClient({ baseUrl: url, apiKey: TEST_KEY });
    const err = await client.batches.resultsStream(id).catch((e: unknown) => e);
    expect(err, 'resultsStream').to.be.instanceOf(InferApiError);
    expect(err).to.include({ code: 'invalid_response' });
  });
});

describe('sdk/cli: request bodies the SDK cannot write', function () {
  this.timeout(30_000);

  // JSON.stringify throws a TypeError for a circular structure; the SDK's -0 scan runs first and walks the
  // object graph without remembering what it has seen. A child process, memory-capped: the loop grows its heap.
  it('jobs.create with circular metadata rejects with a TypeError at once (no endless walk until the heap is gone)', async () => {
    const script = `
      import { InferClient } from '@infer/sdk';
      const client = new InferClient({ baseUrl: 'http://127.0.0.1:9', apiKey: 'k',
        fetch: async () => new Response('{}', { status: 202, headers: { 'content-type': 'application/json' } }) });
      const metadata = { request: 'r-1' };
      metadata.self = metadata;
      const err = await client.jobs.create({ model: 'mlp', input: { x: [1] }, metadata }).catch((e) => e);
      console.log('RESULT', err instanceof TypeError ? 'TypeError' : String(err));
    `;
    const child = spawn(process.execPath, ['--max-old-space-size=96', '--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const r = await collected(child).finally(() => clearTimeout(killer));
    expect(r.stdout.trim(), `exit ${r.code}; stderr: ${r.stderr.slice(0, 300)}`).to.equal('RESULT TypeError');
  });
});

describe('sdk/cli: client timeouts past setTimeout\'s range', function () {
  this.timeout(30_000);

  // docs/sdk.md: timeoutMs is "deadline of one request". Node's timers take at most 2^31 - 1 ms and fire
  // after 1 ms for more (TimeoutOverflowWarning): a client given a long timeout times out every request at once.
  it('a client with timeoutMs 2^31 (~25 days) still gets an answer that takes 50 ms', async () => {
    const server = http.createServer((_req, res) => {
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"object":"list","data":[]}'), 50);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const onWarning = () => undefined;
    process.on('warning', onWarning);
    try {
      const client = new InferClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, apiKey: TEST_KEY, timeoutMs: 2 ** 31 });
      const got = await client.models.list().catch((e: unknown) => e);
      expect(got, String(got)).to.deep.equal([]);
    } finally {
      process.off('warning', onWarning);
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('sdk/cli: a batch uploaded from a pipe (a FIFO, a shell\'s <(zcat …))', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let dir: string;
  before(async () => {
    p = await startPlatform();
    dir = mkdtempSync(path.join(os.tmpdir(), 'sdkcli-fifo-'));
  });
  after(async () => {
    await p?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('batch submit reads it once, every line, and waits for its results (it was "no such file", and the SDK hung)', async () => {
    const fifo = path.join(dir, 'items');
    const made = spawn('mkfifo', [fifo]);
    await once(made, 'exit');
    const output = path.join(dir, 'out.ndjson');
    const run = runCliProcess(p.baseUrl, ['batch', 'submit', fifo, '--model', 'mlp', '--wait', '--output', output, '--poll-ms', '100']);
    // Opening a FIFO for writing waits for its reader: the CLI.
    const lines = Array.from({ length: 5 }, (_, i) => JSON.stringify({ custom_id: `f${i}`, input: { features: mlpFeatures(i) } }));
    const writing = writeFile(fifo, `${lines.join('\n')}\n`);
    const res = await run;
    // A CLI that ended without reading the pipe would leave that write waiting (and this process with it): be its reader.
    const reader = await open(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    await writing;
    await reader.close();
    expect(res.code, res.stderr).to.equal(0);
    const batch = JSON.parse(res.stdout) as Batch;
    expect(batch.request_counts).to.include({ total: 5, succeeded: 5 });
    const ids = readFileSync(output, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { custom_id: string }).custom_id);
    expect(ids).to.deep.equal(lines.map((_, i) => `f${i}`));
  });
});
