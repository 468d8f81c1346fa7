/**
 * `infer batch submit` refuses, before uploading anything, a `--wait` whose
 * results could not be written: docs/cli.md says a batch file may be a pipe
 * (`<(zcat items.ndjson.gz)`) and that with `--wait` it needs an `--output`.
 * Without one, the default `<file>.results.ndjson` is `/dev/fd/63.results.ndjson`,
 * which cannot be created; checking only that its folder is writable let
 * root through (root passes that check on /dev/fd), so the batch was
 * uploaded and run, and the CLI failed only once it ended. An `--output`
 * nothing can create is refused the same way: a usage error (exit 2), and
 * no request sent.
 *
 * The CLI talks to a stub gateway that records what it is sent.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const BATCH_ID = '0a87bddc-318e-447e-b627-c379c5996601';

function batch(): Record<string, unknown> {
  return {
    id: BATCH_ID,
    object: 'batch',
    model: 'mlp',
    version: '2',
    status: 'completed',
    created_at: '2026-01-01T00:00:00.000Z',
    started_at: '2026-01-01T00:00:00.000Z',
    completed_at: '2026-01-01T00:00:00.000Z',
    request_counts: { total: 1, succeeded: 1, failed: 0, canceled: 0 },
    metadata: null,
    urls: { get: `/v1/batches/${BATCH_ID}`, results: `/v1/batches/${BATCH_ID}/results`, cancel: `/v1/batches/${BATCH_ID}/cancel` },
  };
}

describe('cli: batch submit --wait refuses results it could not write, before uploading', function () {
  this.timeout(30_000);
  let server: http.Server;
  let url: string;
  const seen: string[] = [];

  before(async () => {
    server = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      req.resume();
      req.on('end', () => {
        if (req.method === 'POST' && req.url?.startsWith('/v1/batches')) {
          res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify(batch()));
        } else if (req.method === 'GET' && req.url === `/v1/batches/${BATCH_ID}`) {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(batch()));
        } else if (req.method === 'GET' && req.url === `/v1/batches/${BATCH_ID}/results`) {
          res.writeHead(200, { 'content-type': 'application/x-ndjson' }).end('{"index":0,"custom_id":null,"status":"succeeded","output":{"probabilities":[1,0,0,0]},"error":null}\n');
        } else {
          res.writeHead(404, { 'content-type': 'application/problem+json' }).end('{"status":404,"code":"not_found","title":"Not Found","detail":"stub"}');
        }
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const line = JSON.stringify({ custom_id: 'row-0', input: { features: new Array(64).fill(0.5) } });

  /** Run `infer batch submit <(one line) <args>` through bash; its exit code and stderr. */
  async function submitFromPipe(args: string): Promise<{ code: number | null; stderr: string }> {
    const child = spawn('bash', ['-c', `exec node "$CLI" batch submit <(printf "%s\\n" "$LINE") -m mlp --wait --poll-ms 50 --url "$URL" ${args}`], {
      cwd: root,
      env: { ...process.env, CLI: path.join(root, 'apps/cli/bin/infer.js'), LINE: line, URL: url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.stdout.resume();
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const [code] = (await once(child, 'exit')) as [number | null];
    clearTimeout(timer);
    return { code, stderr };
  }

  beforeEach(() => {
    seen.length = 0;
  });

  it('a pipe with --wait and no --output: a usage error naming --output, nothing uploaded', async () => {
    const { code, stderr } = await submitFromPipe('');
    expect(seen.filter((r) => r.startsWith('POST')), `requests the CLI sent (stderr: ${stderr})`).to.deep.equal([]);
    expect(code, `exit code (stderr: ${stderr})`).to.equal(2);
    expect(stderr).to.match(/is a pipe: with --wait, give --output/);
  });

  it('an --output that cannot be created (even by root): a usage error, nothing uploaded', async () => {
    const { code, stderr } = await submitFromPipe('--output /dev/fd/results.ndjson');
    expect(seen.filter((r) => r.startsWith('POST')), `requests the CLI sent (stderr: ${stderr})`).to.deep.equal([]);
    expect(code, `exit code (stderr: ${stderr})`).to.equal(2);
    expect(stderr).to.match(/cannot write \/dev\/fd\/results\.ndjson/);
  });

  it('a pipe with a writable --output: uploaded, waited for, results written there (and no probe left behind before)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'cli-pipe-'));
    try {
      const out = path.join(dir, 'results.ndjson');
      const { code, stderr } = await submitFromPipe(`--output ${out}`);
      expect(code, `exit code (stderr: ${stderr})`).to.equal(0);
      expect(seen.filter((r) => r.startsWith('POST'))).to.deep.equal(['POST /v1/batches?model=mlp']);
      expect(readFileSync(out, 'utf8')).to.match(/"status":"succeeded"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
