/**
 * apps/cli as a user runs it: a child process (`node --import tsx
 * apps/cli/src/main.ts …`) configured by INFER_URL / INFER_API_KEY (and
 * INFER_ADMIN_KEY for the model lifecycle), against an in-process platform.
 * Checks output and exit codes (0 ok, 1 API error, 2 usage error).
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { ModelDescription, ModelEventList, Rollout } from '@infer/sdk';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { REPO_ROOT, SHIPPED_MODELS, startPlatform, TEST_KEY, type TestPlatform } from './helpers/platform.js';
import { collected, runCliProcess, type CliResult } from './helpers/cli.js';
import { waitUntil } from './helpers/wait.js';

const features = (seed: number) => Array.from({ length: 64 }, (_, i) => Math.cos(i + seed));

describe('cli', function () {
  let p: TestPlatform;
  let dir: string;

  const cli = (args: string[], env: Record<string, string> = {}): Promise<CliResult> => runCliProcess(p.baseUrl, args, env);

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
    expect(table.stdout).to.match(/^NAME\s+VERSIONS\s+ROUTING\s+SOURCE/);
    expect(table.stdout).to.match(/^mlp\s+1:ready,2:ready\s+2=100\s+default\s/m);
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

    it('batch submit of a gzip file (rows.ndjson.gz) sends it compressed, and every row runs', async () => {
      const file = path.join(dir, 'rows.ndjson.gz');
      const lines = Array.from({ length: 7 }, (_, i) => JSON.stringify({ custom_id: `z${i}`, input: { features: features(i) } }));
      fs.writeFileSync(file, gzipSync(`${lines.join('\n')}\n`));
      const res = await cli(['batch', 'submit', file, '--model', 'mlp', '--wait', '--poll-ms', '100']);
      expect(res.code, res.stderr).to.equal(0);
      const batch = JSON.parse(res.stdout) as { status: string; request_counts: { total: number; succeeded: number } };
      expect(batch).to.deep.include({ status: 'completed' });
      expect(batch.request_counts).to.include({ total: 7, succeeded: 7 });
    });

    it('`npm run -s cli` from another folder reads a file named there (not from the repository root), and prints only JSON', async () => {
      const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-cwd-'));
      try {
        fs.writeFileSync(path.join(elsewhere, 'here.ndjson'), `${JSON.stringify({ input: { features: features(5) } })}\n`);
        const { code, stdout, stderr } = await collected(
          spawn('npm', ['run', '-s', '--prefix', REPO_ROOT, 'cli', '--', 'batch', 'submit', 'here.ndjson', '-m', 'mlp'], {
            cwd: elsewhere,
            env: { ...process.env, INFER_URL: p.baseUrl, INFER_API_KEY: TEST_KEY },
            stdio: ['ignore', 'pipe', 'pipe'],
          }),
        );
        expect(code, stderr).to.equal(0);
        expect((JSON.parse(stdout) as { object: string; request_counts: { total: number } }).request_counts.total).to.equal(1);
      } finally {
        fs.rmSync(elsewhere, { recursive: true, force: true });
      }
    });

    it('batch results of an unknown batch exits 1', async () => {
      const res = await cli(['batch', 'results', '00000000-0000-4000-8000-000000000000']);
      expect(res.code).to.equal(1);
      expect(res.stderr).to.contain('batch_not_found');
    });
  });
});

/**
 * The model lifecycle commands against a platform with an admin key and a
 * throwaway model repository (mlp 1 and 2, then the int8 candidate copied in
 * as 3). MODEL_POLL_SECONDS=0: the processes look at the folder only when
 * the models' shared state moves, so `models load` is what makes them look.
 */
describe('cli: model lifecycle (admin key)', function () {
  const ADMIN_KEY = 'cli-admin-key';
  const CANDIDATE = path.join(REPO_ROOT, 'examples', 'models', 'mlp', '3');
  let p: TestPlatform;
  let repo: TempModelRepo;

  const cli = (args: string[], env: Record<string, string> = {}): Promise<CliResult> =>
    runCliProcess(p.baseUrl, args, { INFER_ADMIN_KEY: ADMIN_KEY, ...env });
  /** Run and expect exit 0 (stderr in the message otherwise). */
  const ok = async (args: string[]): Promise<CliResult> => {
    const res = await cli(args);
    expect(res.code, `${args.join(' ')}: ${res.stderr}`).to.equal(0);
    return res;
  };
  const model = async (): Promise<ModelDescription> => (await (await p.api('/v1/models/mlp')).json()) as ModelDescription;
  const stateOf = async (version: string) => (await model()).versions_detail.find((d) => d.version === version)?.state;

  before(async function () {
    if (!fs.existsSync(path.join(CANDIDATE, 'model.onnx'))) throw new Error(`${CANDIDATE}/model.onnx is missing: run npm run models`);
    repo = tempModelRepo({ mlp: { from: path.join(SHIPPED_MODELS, 'mlp') } });
    p = await startPlatform({ models: repo.root, env: { ADMIN_API_KEYS: `ops:${ADMIN_KEY}`, MODEL_POLL_SECONDS: '0' } });
  });
  after(async () => {
    await p?.close();
    repo?.remove();
  });

  it("models list shows each version's state and the routing", async function () {
    this.timeout(60_000);
    const table = await ok(['models', 'list']);
    expect(table.stdout).to.match(/^mlp\s+1:ready,2:ready\s+2=100\s+default\s+64\s/m);
    const json = await ok(['models', 'list', '--json']);
    const [mlp] = JSON.parse(json.stdout) as ModelDescription[];
    expect(mlp!.versions_detail.map((d) => [d.version, d.state])).to.deep.equal([
      ['1', 'ready'],
      ['2', 'ready'],
    ]);
    expect(mlp).to.deep.include({ routing: { '2': 100 }, routing_source: 'default' });
  });

  it('refuses an admin command without an admin key (exit 2) and with a tenant key (exit 1, 403, a hint)', async function () {
    this.timeout(60_000);
    const [none, tenant] = await Promise.all([
      cli(['models', 'routing', 'mlp', '2=100'], { INFER_ADMIN_KEY: '' }),
      cli(['models', 'events', 'mlp'], { INFER_ADMIN_KEY: TEST_KEY }),
    ]);
    expect(none.code).to.equal(2);
    expect(none.stderr).to.contain('needs an admin key').and.contain('--admin-key').and.contain('INFER_ADMIN_KEY');
    expect(tenant.code).to.equal(1);
    expect(tenant.stdout).to.equal('');
    expect(tenant.stderr).to.match(/^error: .*admin key.* \(code: forbidden, HTTP 403\)$/m);
    expect(tenant.stderr).to.contain('hint:').and.contain('ADMIN_API_KEYS');
    // --admin-key wins over the environment.
    const flag = await cli(['models', 'events', 'mlp', '--admin-key', ADMIN_KEY], { INFER_ADMIN_KEY: TEST_KEY });
    expect(flag.code, flag.stderr).to.equal(0);
  });

  it('pins the routing, loads a copied-in version, canaries it and resets to the default', async function () {
    this.timeout(60_000);
    const pinned = await ok(['models', 'routing', 'mlp', '2=100']);
    expect(pinned.stdout).to.match(/^model mlp: routing 2=100 \(explicit\)$/m);
    expect(pinned.stdout).to.match(/^VERSION\s+STATE\s+WEIGHT\s+WORKERS/m);

    fs.symlinkSync(CANDIDATE, path.join(repo.root, 'mlp', '3'), 'dir');
    const load = await ok(['models', 'load', 'mlp', '3']);
    expect(load.stdout).to.match(/^3\s+(loading|ready)\s+0\s/m);
    await waitUntil(async () => (await stateOf('3')) === 'ready', 20_000, 'version 3 ready');
    // Pinned: the new version takes no traffic of its own accord.
    expect((await ok(['models', 'list'])).stdout).to.match(/^mlp\s+1:ready,2:ready,3:ready\s+2=100\s+explicit\s/m);

    const canary = await ok(['models', 'routing', 'mlp', '2=90', '3=10']);
    expect(canary.stdout).to.match(/routing 2=90,3=10 \(explicit\)/);
    expect(canary.stdout).to.match(/^3\s+ready\s+10\s+1\s*$/m);
    expect((await model()).routing).to.deep.equal({ '2': 90, '3': 10 });

    const bad = await cli(['models', 'routing', 'mlp', '2=90', '3=20']);
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.contain('invalid_routing').and.contain('HTTP 422');

    const reset = await ok(['models', 'routing', 'mlp', '--default', '--json']);
    expect(JSON.parse(reset.stdout) as ModelDescription).to.deep.include({ routing: { '3': 100 }, routing_source: 'default' });
  });

  it('unloads a version (draining, then gone) and loads it again', async function () {
    this.timeout(60_000);
    const unload = await ok(['models', 'unload', 'mlp', '1']);
    expect(unload.stdout).to.match(/^1\s+draining\s/m);
    await waitUntil(async () => (await stateOf('1')) === undefined, 30_000, 'version 1 unloaded');
    expect((await ok(['models', 'list'])).stdout).to.match(/^mlp\s+2:ready,3:ready\s/m);
    const again = await cli(['models', 'unload', 'mlp', '1']);
    expect(again.code).to.equal(1);
    expect(again.stderr).to.contain('version_not_found');

    const load = await ok(['models', 'load', 'mlp', '1']);
    expect(load.stdout).to.match(/^1\s+(loading|ready)\s/m);
    await waitUntil(async () => (await stateOf('1')) === 'ready', 20_000, 'version 1 ready again');
    expect((await ok(['models', 'list'])).stdout).to.match(/^mlp\s+1:ready,2:ready,3:ready\s/m);
  });

  it('starts a rollout, lists and shows it, refuses a hand routing meanwhile, and cancels it', async function () {
    this.timeout(60_000);
    await ok(['models', 'routing', 'mlp', '2=100']);
    const started = await ok(['models', 'rollout', 'mlp', '3', '--steps', '10,50,100', '--step-seconds', '600', '--max-error-rate', '0.05', '--max-p50-latency-ratio', '3']);
    const rollout = JSON.parse(started.stdout) as Rollout;
    expect(rollout).to.deep.include({ model: 'mlp', version: '3', state: 'running', step: 0, step_seconds: 600, max_error_rate: 0.05, max_p50_latency_ratio: 3 });
    expect(rollout.steps).to.deep.equal([10, 50, 100]);
    expect(rollout.from).to.deep.equal({ routing: { '2': 100 }, routing_source: 'explicit' });
    expect((await model()).routing).to.deep.equal({ '2': 90, '3': 10 });

    const [list, one, second, hand] = await Promise.all([
      ok(['models', 'rollouts', 'mlp']),
      ok(['models', 'rollouts', 'mlp', rollout.id]),
      cli(['models', 'rollout', 'mlp', '3', '--steps', '100', '--step-seconds', '5']),
      cli(['models', 'routing', 'mlp', '2=100']),
    ]);
    expect(list.stdout).to.match(/^ID\s+VERSION\s+STATE\s+STEP/);
    expect(list.stdout).to.match(new RegExp(`^${rollout.id}\\s+3\\s+running\\s+1/3 \\(10%\\)\\s+10,50,100\\s`, 'm'));
    expect((JSON.parse(one.stdout) as Rollout).id).to.equal(rollout.id);
    expect(second.code).to.equal(1);
    expect(second.stderr).to.contain('conflict').and.contain('HTTP 409');
    expect(hand.code).to.equal(1);
    expect(hand.stderr).to.contain('conflict').and.contain('HTTP 409');

    // No id: the running one.
    const canceled = JSON.parse((await ok(['models', 'rollout-cancel', 'mlp'])).stdout) as Rollout;
    expect(canceled).to.deep.include({ id: rollout.id, state: 'canceled', reason: 'canceled by ops' });
    expect(canceled.ended_at).to.be.a('string');
    await waitUntil(async () => JSON.stringify((await model()).routing) === JSON.stringify({ '2': 100 }), 5000, 'routing back to 2=100');

    const [none, ended, listed] = await Promise.all([
      cli(['models', 'rollout-cancel', 'mlp']),
      cli(['models', 'rollout-cancel', 'mlp', rollout.id]),
      ok(['models', 'rollouts', 'mlp', '--json']),
    ]);
    expect(none.code).to.equal(1);
    expect(none.stderr).to.contain('no rollout of model "mlp" is running');
    expect(ended.code).to.equal(1);
    expect(ended.stderr).to.contain('HTTP 409');
    expect((JSON.parse(listed.stdout) as Rollout[]).map((r) => [r.id, r.state])).to.deep.equal([[rollout.id, 'canceled']]);
  });

  it('lists the events log, newest first, page by page', async function () {
    this.timeout(60_000);
    const all = JSON.parse((await ok(['models', 'events', 'mlp', '--limit', '100', '--json'])).stdout) as ModelEventList;
    expect(all.object).to.equal('list');
    expect(all.has_more).to.equal(false);
    const types = all.data.map((e) => e.type);
    expect(types[0]).to.equal('rollout_canceled');
    expect(types).to.include.members(['routing_changed', 'version_loaded', 'version_unloaded', 'rollout_started', 'rollout_canceled']);
    expect(all.data.filter((e) => e.type === 'routing_changed').every((e) => e.actor === 'ops')).to.equal(true);
    const times = all.data.map((e) => Date.parse(e.at));
    expect(times).to.deep.equal([...times].sort((a, b) => b - a));

    const page = await ok(['models', 'events', 'mlp', '--limit', '2']);
    const rows = page.stdout.trim().split('\n');
    expect(rows[0]).to.match(/^AT\s+TYPE\s+ACTOR\s+DATA\s+ID$/);
    expect(rows).to.have.length(3);
    expect(rows[1]).to.match(/\srollout_canceled\s+ops\s/);
    expect(page.stderr).to.equal(`more: --after ${all.data[1]!.id}\n`);
    const next = JSON.parse((await ok(['models', 'events', 'mlp', '--limit', '2', '--after', all.data[1]!.id, '--json'])).stdout) as ModelEventList;
    expect(next.data.map((e) => e.id)).to.deep.equal(all.data.slice(2, 4).map((e) => e.id));
  });

  it('exits 2 on bad lifecycle arguments, before any request', async function () {
    this.timeout(60_000);
    const cases: string[][] = [
      ['models', 'routing', 'mlp'], // neither weights nor --default
      ['models', 'routing', 'mlp', '2=90', '3=10', '--default'],
      ['models', 'routing', 'mlp', '2=x'],
      ['models', 'routing', 'mlp', '2=50', '2=50'],
      ['models', 'load', 'mlp', 'three'],
      ['models', 'rollout', 'mlp', '3', '--step-seconds', '5'], // no --steps
      ['models', 'rollout', 'mlp', '3', '--steps', '10,x', '--step-seconds', '5'],
      ['models', 'rollout', 'mlp', '3', '--steps', '100', '--step-seconds', '5', '--max-error-rate', '2'],
      ['models', 'events', 'mlp', '--limit', '0'],
    ];
    const results = await Promise.all(cases.map((args) => cli(args)));
    results.forEach((res, i) => {
      expect(res.code, `${cases[i]!.join(' ')}: ${res.stderr}`).to.equal(2);
      expect(res.stderr).to.contain('error');
      expect(res.stdout).to.equal('');
    });
  });
});
