import { copyFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { expect } from 'chai';
import type { ModelDescription } from '@infer/contract';
import { createLogger } from '@infer/logger';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { mlpFeatures } from './helpers/batches.js';
import { runJob } from './helpers/jobs.js';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A version's files are read once (docs/rollouts.md): a model.onnx or
 * config.json changed in place leaves the processes that have the version
 * running what they read. What the platform owes the operator is to say so:
 * each process that sees the change logs one warning, and the version keeps
 * answering as it did (not half one model, half the other, in one process).
 */
const ADMIN = 'files-admin';

describe('model files changed in place', function () {
  this.timeout(60_000);
  let repo: TempModelRepo | undefined;
  let p: TestPlatform | undefined;
  let worker: InferenceWorker | undefined;
  const lines: Array<Record<string, unknown>> = [];
  const warnings = () => lines.filter((l) => l.level === 40 && String(l.msg).includes('changed on disk'));
  /** An admin's load has every process scan the folder; the worker's look returns once its scan is done. */
  async function scanNow(): Promise<void> {
    const res = await fetch(`${p!.baseUrl}/v1/models/mlp/versions/2/load`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    expect(res.status).to.equal(202);
    await worker!.lookAtModels();
  }

  beforeEach(async () => {
    lines.length = 0;
    repo = servedMlpRepo(['1', '2']);
    p = await startPlatform({ models: repo.root, worker: false, env: { MODEL_POLL_SECONDS: '0.2', ADMIN_API_KEYS: `ops:${ADMIN}` } });
    const destination = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    });
    worker = await createWorker(p.config, createLogger({ level: 'warn', name: 'worker', destination }));
    await p.gateway.catalog.refresh();
    const platform = p;
    await waitUntil(
      async () => ((await (await platform.api('/v1/models/mlp')).json()) as ModelDescription).versions_detail.filter((d) => d.state === 'ready').length === 2,
      20_000,
      'both versions ready',
    );
  });
  afterEach(async () => {
    await worker?.close();
    await p?.close();
    repo?.remove();
  });

  it('a model.onnx replaced in its folder: one warning naming the version, and the version answers as before', async () => {
    const features = mlpFeatures(5);
    const out = async () => JSON.stringify((await runJob(p!, { model: 'mlp', version: '2', input: { features } })).output);
    const before = await out();
    const dir = path.join(repo!.root, 'mlp', '2');
    copyFileSync(path.join(repo!.root, 'mlp', '1', 'model.onnx'), path.join(dir, '.model.onnx.tmp'));
    renameSync(path.join(dir, '.model.onnx.tmp'), path.join(dir, 'model.onnx'));
    await waitUntil(() => warnings().length > 0, 10_000, 'the warning');
    // Told once, however many scans see it.
    await scanNow();
    await scanNow();
    expect(warnings().map((l) => [l.model, l.version])).to.deep.equal([['mlp', '2']]);
    expect(await out()).to.equal(before);
  });

  it("the model's config.json edited: one warning for each of its loaded versions", async () => {
    const file = path.join(repo!.root, 'mlp', 'config.json');
    const config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    writeFileSync(file + '.tmp', JSON.stringify({ ...config, max_batch_size: 8 }));
    renameSync(file + '.tmp', file);
    await waitUntil(() => warnings().length >= 2, 10_000, 'the warnings');
    await scanNow();
    expect(warnings().map((l) => l.version).sort()).to.deep.equal(['1', '2']);
  });
});
