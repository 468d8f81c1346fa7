/**
 * apps/cli as a user runs it: a child process (`node --import tsx
 * apps/cli/src/main.ts …`) configured by INFER_URL / INFER_API_KEY, against
 * an in-process platform. Checks output and exit codes (0 ok, 1 API error,
 * 2 usage error).
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const MAIN = path.join(REPO_ROOT, 'apps', 'cli', 'src', 'main.ts');
const features = (seed: number) => Array.from({ length: 64 }, (_, i) => Math.cos(i + seed));

describe('cli', function () {
  let p: TestPlatform;
  let dir: string;

  async function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, INFER_URL: p.baseUrl, INFER_API_KEY: TEST_KEY, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const [code] = (await once(child, 'close')) as [number | null];
    return { code, stdout, stderr };
  }

  before(async () => {
    p = await startPlatform();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-test-'));
  });
  after(async () => {
    await p.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('models list prints a table, --json the models', async () => {
    const table = await cli(['models', 'list']);
    expect(table.code, table.stderr).to.equal(0);
    expect(table.stdout).to.match(/^NAME\s+VERSIONS/);
    expect(table.stdout).to.match(/^mlp\s+1,2\s+2\s/m);
    const json = await cli(['models', 'list', '--json']);
    const models = JSON.parse(json.stdout) as Array<{ name: string }>;
    expect(models.map((m) => m.name)).to.include('mlp');
  });

  it('jobs submit --wait prints the ended job as JSON', async () => {
    const res = await cli(['jobs', 'submit', '--model', 'mlp', '--version', '1', '--input', JSON.stringify({ features: features(1) }), '--wait']);
    expect(res.code, res.stderr).to.equal(0);
    const job = JSON.parse(res.stdout) as { id: string; status: string; version: string; output: { probabilities: number[] } };
    expect(job.status).to.equal('succeeded');
    expect(job.version).to.equal('1');
    expect(job.output.probabilities).to.have.length(4);

    const got = await cli(['jobs', 'get', job.id]);
    expect(got.code, got.stderr).to.equal(0);
    expect((JSON.parse(got.stdout) as { id: string }).id).to.equal(job.id);
  });

  it('jobs submit reads --input-file, and without --wait prints the job at once', async () => {
    const file = path.join(dir, 'input.json');
    fs.writeFileSync(file, JSON.stringify({ features: features(2) }));
    const res = await cli(['jobs', 'submit', '-m', 'mlp', '--input-file', file]);
    expect(res.code, res.stderr).to.equal(0);
    const job = JSON.parse(res.stdout) as { id: string; object: string };
    expect(job.object).to.equal('job');
    const waited = await cli(['jobs', 'get', job.id, '--wait', '--timeout', '20']);
    expect(waited.code, waited.stderr).to.equal(0);
    expect((JSON.parse(waited.stdout) as { status: string }).status).to.equal('succeeded');
  });

  it('exits 2 on usage errors', async () => {
    const cases: string[][] = [
      ['jobs', 'submit', '--model', 'mlp'], // no input
      ['jobs', 'submit', '--model', 'mlp', '--input', 'not json'],
      ['jobs', 'submit', '--model', 'mlp', '--input', '{}', '--input-file', 'x.json'],
      ['jobs', 'submit', '--input', '{}'], // no --model
      ['jobs', 'submit', '--model', 'mlp', '--version', 'two', '--input', '{}'],
      ['jobs', 'frobnicate'],
      ['nope'],
      ['batch', 'submit', path.join(dir, 'missing.ndjson'), '--model', 'mlp'],
    ];
    const results = await Promise.all(cases.map((args) => cli(args)));
    results.forEach((res, i) => {
      expect(res.code, `${cases[i]!.join(' ')}: ${res.stderr}`).to.equal(2);
      expect(res.stderr).to.contain('error');
      expect(res.stdout).to.equal('');
    });
  });

  it('exits 0 for --help', async () => {
    const res = await cli(['jobs', 'submit', '--help']);
    expect(res.code).to.equal(0);
    expect(res.stdout).to.contain('--input-file');
  });

  it('exits 1 on API errors, printing the detail and code', async () => {
    const missing = await cli(['jobs', 'get', '00000000-0000-4000-8000-000000000000']);
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.contain('job_not_found').and.contain('404');
    const invalid = await cli(['jobs', 'submit', '--model', 'mlp', '--input', '{"features":[1,2]}']);
    expect(invalid.code).to.equal(1);
    expect(invalid.stderr).to.contain('invalid_input');
    const unauthorized = await cli(['models', 'list'], { INFER_API_KEY: 'wrong' });
    expect(unauthorized.code).to.equal(1);
    expect(unauthorized.stderr).to.contain('unauthorized');
  });

  it('--url and --api-key flags override the environment', async () => {
    const res = await cli(['models', 'list', '--url', p.baseUrl, '--api-key', TEST_KEY], {
      INFER_URL: 'http://127.0.0.1:9',
      INFER_API_KEY: 'wrong',
    });
    expect(res.code, res.stderr).to.equal(0);
  });

  describe('batch', () => {
    before(async function () {
      // Capability probe: until /v1/batches is served, the generic route 404 answers.
      const res = await p.api('/v1/batches', { method: 'POST', body: '{}' });
      const body = (await res.json().catch(() => ({}))) as { code?: string };
      if (res.status === 404 && body.code === 'not_found') this.skip();
    });

    it('batch submit --wait --output uploads, reports progress and downloads the results', async () => {
      const file = path.join(dir, 'items.ndjson');
      const lines = Array.from({ length: 12 }, (_, i) => JSON.stringify({ custom_id: `c${i}`, input: { features: features(i) } }));
      fs.writeFileSync(file, `${lines.join('\n')}\n`);
      const output = path.join(dir, 'out.ndjson');
      const res = await cli(['batch', 'submit', file, '--model', 'mlp', '--wait', '--output', output, '--poll-ms', '100']);
      expect(res.code, res.stderr).to.equal(0);
      const batch = JSON.parse(res.stdout) as { id: string; status: string; request_counts: { total: number; succeeded: number } };
      expect(batch.status).to.equal('completed');
      expect(batch.request_counts).to.include({ total: 12, succeeded: 12 });
      // Not a TTY: plain progress lines on stderr, no bar.
      expect(res.stderr).to.match(new RegExp(`batch ${batch.id} completed: 12/12 done`));
      const results = fs
        .readFileSync(output, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { index: number; custom_id: string; status: string });
      expect(results.map((r) => r.custom_id)).to.deep.equal(lines.map((_, i) => `c${i}`));
      expect(results.every((r) => r.status === 'succeeded')).to.equal(true);

      const status = await cli(['batch', 'status', batch.id]);
      expect(status.code, status.stderr).to.equal(0);
      expect((JSON.parse(status.stdout) as { id: string }).id).to.equal(batch.id);

      const again = await cli(['batch', 'results', batch.id]);
      expect(again.code, again.stderr).to.equal(0);
      expect(again.stdout).to.equal(fs.readFileSync(output, 'utf8'));

      const list = await cli(['batch', 'list', '--json']);
      expect(list.code, list.stderr).to.equal(0);
      expect((JSON.parse(list.stdout) as Array<{ id: string }>).map((b) => b.id)).to.include(batch.id);

      const cancel = await cli(['batch', 'cancel', batch.id]);
      expect([0, 1]).to.include(cancel.code); // an ended batch: the API decides
    });

    it('batch submit without --wait prints the batch; the default output is <file>.results.ndjson', async () => {
      const file = path.join(dir, 'default.ndjson');
      fs.writeFileSync(file, `${JSON.stringify({ input: { features: features(99) } })}\n`);
      const res = await cli(['batch', 'submit', file, '--model', 'mlp', '--wait', '--poll-ms', '100']);
      expect(res.code, res.stderr).to.equal(0);
      expect(fs.existsSync(`${file}.results.ndjson`)).to.equal(true);
      const quick = await cli(['batch', 'submit', file, '--model', 'mlp']);
      expect(quick.code, quick.stderr).to.equal(0);
      expect((JSON.parse(quick.stdout) as { object: string }).object).to.equal('batch');
    });

    it('batch results of an unknown batch exits 1', async () => {
      const res = await cli(['batch', 'results', '00000000-0000-4000-8000-000000000000']);
      expect(res.code).to.equal(1);
      expect(res.stderr).to.contain('batch_not_found');
    });
  });
});
