/**
 * The `infer` CLI when the network or its flags misbehave.
 * docs/cli.md: exit 1 when the API answered with an error or could not be
 * reached (`error: <detail> …` on stderr), exit 2 for a usage error (bad
 * flags) "before any request". Run against small fake gateways: no platform.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { REPO_ROOT } from './helpers/platform.js';
import { runCliProcess, type CliResult } from './helpers/cli.js';

const MAIN = path.join(REPO_ROOT, 'apps', 'cli', 'src', 'main.ts');

interface Fake {
  url: string;
  requests: string[];
  close(): Promise<void>;
}

async function fakeGateway(handler: http.RequestListener): Promise<Fake> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    handler(req, res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** `error: …` on stderr, the exit code asked for, no stack trace. */
function expectCleanFailure(res: CliResult, code: 1 | 2, what: string): void {
  expect(res.stderr, `${what}: a stack trace on stderr`).to.not.match(/^\s+at /m);
  expect(res.stderr, `${what}: stderr`).to.match(/^error: /m);
  expect(res.code, `${what}: exit code (stderr: ${res.stderr.slice(0, 300)})`).to.equal(code);
}

describe('lifecycle: the CLI when the gateway goes away mid-answer', function () {
  this.timeout(60_000);
  let fake: Fake | undefined;
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'infer-cli-edges-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    await fake?.close();
    fake = undefined;
  });

  it('models list: the connection drops after the headers (a gateway restarting): exit 1 with an error line, not a stack trace', async () => {
    fake = await fakeGateway((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '4000' });
      res.write('{"object":"list","data":[');
      setImmediate(() => res.socket?.destroy());
    });
    const res = await runCliProcess(fake.url, ['models', 'list']);
    expectCleanFailure(res, 1, 'models list, connection dropped mid-body');
  });

  it('batch results --output: the connection drops mid-download: exit 1 with an error line, not a stack trace', async () => {
    fake = await fakeGateway((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.write(`${JSON.stringify({ index: 0, custom_id: null, status: 'succeeded', output: {}, error: null })}\n`);
      setImmediate(() => res.socket?.destroy());
    });
    const out = path.join(dir, 'results.ndjson');
    const res = await runCliProcess(fake.url, ['batch', 'results', '00000000-0000-4000-8000-000000000000', '--output', out]);
    expectCleanFailure(res, 1, 'batch results --output, connection dropped mid-download');
  });

  it('batch results piped into a reader that stops early (| head): no stack trace', async () => {
    const line = `${JSON.stringify({ index: 0, custom_id: null, status: 'succeeded', output: { y: 'x'.repeat(200) }, error: null })}\n`;
    fake = await fakeGateway((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      let n = 0;
      const more = () => {
        while (n < 50_000) {
          n++;
          if (!res.write(line)) return void res.once('drain', more);
        }
        res.end();
      };
      more();
    });
    // `infer batch results <id> | head -c 1000`: the reader closes the pipe after 1000 bytes.
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'batch', 'results', '00000000-0000-4000-8000-000000000000'], {
      cwd: REPO_ROOT,
      env: { ...process.env, INFER_URL: fake.url, INFER_API_KEY: 'k' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    let seen = 0;
    child.stdout.on('data', (b: Buffer) => {
      seen += b.length;
      if (seen >= 1000) child.stdout.destroy();
    });
    const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
    expect(stderr, `exit ${code} ${signal}: stderr`).to.not.match(/^\s+at /m);
    expect(stderr).to.not.contain('EPIPE');
  });
});

describe('lifecycle: CLI flag values outside their documented range are usage errors (exit 2), before any request', function () {
  this.timeout(60_000);
  let fake: Fake;
  before(async () => {
    fake = await fakeGateway((_req, res) => {
      res.writeHead(422, { 'content-type': 'application/problem+json' });
      res.end(JSON.stringify({ type: 'about:blank', title: 'Unprocessable', status: 422, detail: 'refused by the server', code: 'invalid_input' }));
    });
  });
  after(async () => fake.close());

  it('models events --limit 101 ("--limit <1-100>"), models rollout --steps that do not rise or do not end at 100', async () => {
    const cases: string[][] = [
      ['models', 'events', 'mlp', '--limit', '101'],
      ['models', 'rollout', 'mlp', '3', '--steps', '10,50', '--step-seconds', '5'],
      ['models', 'rollout', 'mlp', '3', '--steps', '50,10,100', '--step-seconds', '5'],
    ];
    const problems: string[] = [];
    for (const args of cases) {
      const before = fake.requests.length;
      const res = await runCliProcess(fake.url, args, { INFER_ADMIN_KEY: 'admin' });
      const sent = fake.requests.slice(before);
      if (res.code !== 2 || sent.length > 0) problems.push(`${args.join(' ')}: exit ${res.code}, requests sent: ${JSON.stringify(sent)}, stderr: ${res.stderr.trim()}`);
    }
    expect(problems, problems.join('\n')).to.deep.equal([]);
  });

  it('--timeout or --poll-ms without --wait (they shape only the wait) is a usage error, not silently ignored', async () => {
    const file = path.join(os.tmpdir(), `cli-timeout-${process.pid}.ndjson`);
    fs.writeFileSync(file, '{"custom_id": "a", "input": {"features": [1]}}\n');
    const cases: string[][] = [
      ['jobs', 'submit', '-m', 'mlp', '--input', '{"features": [1]}', '--timeout', '30'],
      ['jobs', 'get', '00000000-0000-4000-8000-000000000000', '--timeout', '30'],
      ['batch', 'submit', file, '-m', 'mlp', '--timeout', '30'],
      ['batch', 'submit', file, '-m', 'mlp', '--poll-ms', '500'],
    ];
    const problems: string[] = [];
    try {
      for (const args of cases) {
        const before = fake.requests.length;
        const res = await runCliProcess(fake.url, args);
        const sent = fake.requests.slice(before);
        if (res.code !== 2 || sent.length > 0 || !/--(timeout|poll-ms) needs --wait/.test(res.stderr)) problems.push(`${args.join(' ')}: exit ${res.code}, requests sent: ${JSON.stringify(sent)}, stderr: ${res.stderr.trim()}`);
      }
    } finally {
      fs.rmSync(file, { force: true });
    }
    expect(problems, problems.join('\n')).to.deep.equal([]);
  });

  it('an id or name that fetch would resolve away ("", ".", "..") is a usage error, not another route\'s answer', async () => {
    // `/v1/batches/.` would be GET /v1/batches, the list: exit 0 with the wrong document.
    const cases: string[][] = [
      ['batch', 'status', '.'],
      ['batch', 'cancel', '..'],
      ['jobs', 'get', ''],
      ['models', 'get', '.'],
    ];
    const problems: string[] = [];
    for (const args of cases) {
      const before = fake.requests.length;
      const res = await runCliProcess(fake.url, args);
      const sent = fake.requests.slice(before);
      if (res.code !== 2 || sent.length > 0 || !/cannot be/.test(res.stderr)) problems.push(`${JSON.stringify(args)}: exit ${res.code}, requests sent: ${JSON.stringify(sent)}, stderr: ${res.stderr.trim()}`);
    }
    expect(problems, problems.join('\n')).to.deep.equal([]);
  });
});

describe('lifecycle: jobs submit --input-file with a UTF-8 BOM', function () {
  this.timeout(60_000);
  let fake: Fake;
  let dir: string;
  const bodies: string[] = [];
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-bom-'));
    fake = await fakeGateway((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        bodies.push(Buffer.concat(chunks).toString('utf8'));
        res.writeHead(202, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'j1', object: 'job', model: 'mlp', version: '1', status: 'queued' }));
      });
    });
  });
  after(async () => {
    await fake.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('sends the file\'s JSON without the BOM (as Windows editors save it; the gateway and `batch submit` skip one too)', async () => {
    const file = path.join(dir, 'input.json');
    fs.writeFileSync(file, '\uFEFF{"features": [1, 2, 3]}');
    const res = await runCliProcess(fake.url, ['jobs', 'submit', '-m', 'mlp', '--input-file', file]);
    expect(res.code, res.stderr).to.equal(0);
    expect(JSON.parse(bodies.at(-1)!)).to.deep.include({ model: 'mlp', input: { features: [1, 2, 3] } });
  });
});
