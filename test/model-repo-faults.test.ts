/**
 * The model lifecycle when the repository folder misbehaves (a config.json
 * rewritten in place), as README.md and docs/rollouts.md promise it.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, constants, cpSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { ModelDescription, ModelEvent } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { SHIPPED_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';
import { expectProblem } from './helpers/jobs.js';
import { waitUntil } from './helpers/wait.js';

const ADMIN = 'lifecycle-admin-key';
const SERVED_MLP = path.join(SHIPPED_MODELS, 'mlp');
const env = { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0.2', WORKER_METRICS_PORT: '0' };

async function describeModel(p: TestPlatform): Promise<ModelDescription> {
  const res = await p.api('/v1/models/mlp');
  expect(res.status).to.equal(200);
  return (await res.json()) as ModelDescription;
}
const detailOf = (m: ModelDescription, v: string) => m.versions_detail.find((d) => d.version === v);

describe('lifecycle: the model repository under faults', function () {
  this.timeout(90_000);
  let repo: TempModelRepo | undefined;
  let p: TestPlatform | undefined;
  let worker: InferenceWorker | undefined;
  let redis: Redis | undefined;

  /** A gateway and a worker with a repository of its own (separate processes would each have theirs). */
  async function start(versions: string[]): Promise<TestPlatform> {
    repo = servedMlpRepo(versions);
    p = await startPlatform({ models: repo.root, worker: false, env });
    worker = await createWorker(p.config, silentLogger);
    await p.gateway.catalog.refresh();
    return p;
  }

  afterEach(async () => {
    await worker?.close();
    worker = undefined;
    await p?.close();
    p = undefined;
    repo?.remove();
    repo = undefined;
    redis?.disconnect();
    redis = undefined;
  });

  it('a version that failed because config.json was invalid JSON (rewritten in place) loads once config.json is fixed: "fix the file and the next look tries it again"', async () => {
    const p = await start(['1']);
    await waitUntil(async () => detailOf(await describeModel(p), '1')?.state === 'ready', 20_000, 'version 1 ready');
    const config = path.join(repo!.root, 'mlp', 'config.json');
    // An editor or a deploy script caught half-way through rewriting the model's config.json ...
    writeFileSync(config, '{"max_batch_size": 64, "max_');
    // ... just as version 2 is moved in.
    cpSync(path.join(SERVED_MLP, '2'), path.join(repo!.root, 'mlp', '.incoming-2'), { recursive: true, dereference: true });
    renameSync(path.join(repo!.root, 'mlp', '.incoming-2'), path.join(repo!.root, 'mlp', '2'));
    const failed = await waitUntil(
      async () => {
        const d = detailOf(await describeModel(p), '2');
        return d?.state === 'failed' ? d : undefined;
      },
      20_000,
      'version 2 failed (its config.json is not JSON)',
    );
    expect(failed.error).to.contain('config.json');
    // Version 1, loaded before, serves on.
    expect(detailOf(await describeModel(p), '1')?.state).to.equal('ready');

    // The write finishes: config.json is valid again. Polling every 0.2 s, the next look must try version 2 again.
    writeFileSync(config, JSON.stringify({ max_batch_size: 64, max_delay_ms: 2 }));
    let last: string | undefined;
    try {
      await waitUntil(
        async () => {
          last = detailOf(await describeModel(p), '2')?.state;
          return last === 'ready';
        },
        10_000,
        'version 2 ready after config.json was fixed',
      );
    } catch {
      expect.fail(`version 2 is still ${last} 10 s after its config.json was fixed (MODEL_POLL_SECONDS=0.2): a failed version is retried only when model.onnx's mtime changes`);
    }
  });


  it('an admin load asked while another look is still loading a slow version answers from a look of its own: 422 for a file that cannot load', async () => {
    repo = servedMlpRepo(['1']);
    // The gateway alone, looking at its folder only when an admin asks.
    p = await startPlatform({ models: repo.root, worker: false, env: { ...env, MODEL_POLL_SECONDS: '0' } });
    const gw = p;
    const admin = (pathname: string) => fetch(gw.baseUrl + pathname, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    // Version 3 is a named pipe: the look that loads it lasts until the test writes the model into it.
    mkdirSync(path.join(repo.root, 'mlp', '3'));
    const fifo = path.join(repo.root, 'mlp', '3', 'model.onnx');
    execFileSync('mkfifo', [fifo]);
    let written = false;
    try {
      const loadThree = admin('/v1/models/mlp/versions/3/load');
      await waitUntil(() => gw.gateway.models.loading().some((l) => l.version === '3'), 10_000, 'the look to be loading version 3');
      // Meanwhile a version that cannot load is copied in, and loaded by an admin.
      mkdirSync(path.join(repo.root, 'mlp', '7'));
      writeFileSync(path.join(repo.root, 'mlp', '7', 'model.onnx'), 'this is not an ONNX model');
      const loadSeven = admin('/v1/models/mlp/versions/7/load');
      // Its request is recorded (then it looks): only now does the slow look go on.
      await waitUntil(
        async () => {
          const res = await fetch(`${gw.baseUrl}/v1/models/mlp/events?limit=100`, { headers: { authorization: `Bearer ${ADMIN}` } });
          const events = ((await res.json()) as { data: ModelEvent[] }).data;
          return events.some((e) => e.type === 'version_loaded' && e.data.version === '7');
        },
        10_000,
        "version 7's load to be asked for",
      );
      await writeFile(fifo, readFileSync(path.join(SERVED_MLP, '2', 'model.onnx')));
      written = true;
      expect((await loadThree).status).to.equal(202);
      await expectProblem(await loadSeven, 422, 'invalid_input');
    } finally {
      if (!written) {
        try {
          closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
        } catch {
          rmSync(fifo, { force: true });
        }
      }
    }
  });
});
