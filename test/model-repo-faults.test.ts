/**
 * The model lifecycle when the repository folder misbehaves (a config.json
 * rewritten in place), as README.md and docs/rollouts.md promise it.
 */
import { cpSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { ModelDescription } from '@infer/contract';
import { silentLogger } from '@infer/logger';
import { createWorker, type InferenceWorker } from '../apps/worker/src/index.js';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { SHIPPED_MODELS, startPlatform, type TestPlatform } from './helpers/platform.js';
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

});
