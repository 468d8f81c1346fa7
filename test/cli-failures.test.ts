/**
 * The CLI and SDK as a user meets them when something is off: a
 * malformed --url, an --output path that cannot be written, a URL that
 * answers 200 with something other than JSON, and the deadline of
 * `jobs.run` / `jobs submit --wait --timeout`. The CLI promises (docs/cli.md)
 * `error: …` on stderr and a non-zero exit, never a stack trace.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { InferClient, InferTimeoutError } from '@infer/sdk';
import { runCliProcess, type CliResult } from './helpers/cli.js';
import { startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';

const features = (seed: number) => Array.from({ length: 64 }, (_, i) => Math.sin(i + seed));

const runCli = (baseUrl: string, args: string[]) => runCliProcess(baseUrl, args);

/** A clean CLI failure: the exit code docs/cli.md gives (2 usage, 1 otherwise), an `error: …` line, no stack trace. */
function expectCleanFailure(res: CliResult, code: 1 | 2, what: string): void {
  expect(res.code, `${what}: exit code (stderr: ${res.stderr})`).to.equal(code);
  expect(res.stderr, `${what}: a stack trace on stderr`).to.not.match(/^\s+at /m);
  expect(res.stderr, `${what}: stderr`).to.match(/^error: /m);
}

describe('cli: failures are clean', function () {
  this.timeout(60_000);
  let p: TestPlatform;
  let client: InferClient;
  let dir: string;
  before(async () => {
    p = await startPlatform();
    client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-failures-'));
  });
  after(async () => {
    await p?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a malformed --url is a usage error, not a stack trace', async () => {
    const res = await runCli(p.baseUrl, ['models', 'list', '--url', 'not a url']);
    expectCleanFailure(res, 2, '--url "not a url"');
  });

  it('batch results --output into a missing folder fails with a message', async () => {
    const b = await client.batches.create({ model: 'mlp', items: [{ input: { features: features(1) } }] });
    await client.batches.wait(b.id, { pollMs: 50, timeoutMs: 20_000 });
    const res = await runCli(p.baseUrl, ['batch', 'results', b.id, '--output', path.join(dir, 'missing', 'out.ndjson')]);
    expectCleanFailure(res, 1, 'batch results --output <missing dir>/out.ndjson');
  });

  it('batch submit --wait --output into a missing folder fails with a message', async () => {
    const file = path.join(dir, 'items.ndjson');
    fs.writeFileSync(file, `${JSON.stringify({ input: { features: features(2) } })}\n`);
    const res = await runCli(p.baseUrl, ['batch', 'submit', file, '-m', 'mlp', '--wait', '--poll-ms', '50', '--output', path.join(dir, 'missing', 'out.ndjson')]);
    expectCleanFailure(res, 2, 'batch submit --wait --output <missing dir>/out.ndjson');
    // Refused before the upload, not after waiting for the batch.
    expect(res.stderr).to.not.include('submitted');
  });

  it('a --url that answers 200 with HTML (not the gateway) fails with a message', async () => {
    const server = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>hello</html>'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const res = await runCli(url, ['models', 'list']);
      expectCleanFailure(res, 1, 'models list against an HTML server');
      expect(res.stderr).to.include('invalid_response');
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('sdk and cli: a deadline names the timeout asked for (no worker)', function () {
  this.timeout(30_000);
  let p: TestPlatform;
  let client: InferClient;
  before(async () => {
    p = await startPlatform({ worker: false });
    client = new InferClient({ baseUrl: p.baseUrl, apiKey: TEST_KEY });
  });
  after(async () => {
    await p?.close();
  });

  it('jobs.run({timeoutMs}) times out with InferTimeoutError naming the timeout asked for', async () => {
    const started = Date.now();
    const err = await client.jobs.run({ model: 'mlp', input: { features: features(3) } }, { timeoutMs: 1200 }).catch((e: unknown) => e);
    // Its long polls ask for what is left of the deadline, to the millisecond: whole seconds rounded up took 3 s.
    expect(Date.now() - started, 'ms before jobs.run gave up').to.be.below(2800);
    expect(err).to.be.instanceOf(InferTimeoutError);
    const message = (err as Error).message;
    expect(message, message).to.contain('1200 ms');
  });

  it('jobs submit --wait --timeout 1 says it waited 1 s', async () => {
    const res = await runCli(p.baseUrl, ['jobs', 'submit', '-m', 'mlp', '--input', JSON.stringify({ features: features(4) }), '--wait', '--timeout', '1']);
    expect(res.code, res.stderr).to.equal(1);
    expect(res.stderr, res.stderr).to.match(/did not end within (1000 ms|1 s)/);
  });
});
