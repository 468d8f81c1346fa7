import { cpSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import type { ModelDescription, ModelEvent } from '@infer/contract';
import { mlpFeatures } from './helpers/batches.js';
import { runJob } from './helpers/jobs.js';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * A removed version's folder put back while the version is still draining
 * (within its grace, or while jobs are still queued for it) is the same
 * model only if it holds the same file. With another model.onnx, the
 * session of the removed file must not go on serving under that version
 * number (a worker started since would load the new file: one version, two
 * models): it drains and is released, then the new file is loaded.
 */
const ADMIN = 'review-admin-key';

describe('model versions: a removed version folder put back with a new model.onnx', function () {
  this.timeout(60_000);
  let repo: TempModelRepo | undefined;
  let p: TestPlatform | undefined;

  afterEach(async () => {
    await p?.close();
    p = undefined;
    repo?.remove();
    repo = undefined;
  });

  it('serves the model.onnx now in the folder (not the removed one) once the version is ready again', async () => {
    repo = servedMlpRepo(['1', '2']);
    p = await startPlatform({ models: repo.root, env: { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0.2' } });
    const platform = p;
    const features = mlpFeatures(7);
    const out = async (version: string) => (await runJob(platform, { model: 'mlp', version, input: { features } })).output;
    const v1 = await out('1');
    const oldV2 = await out('2');
    expect(v1, 'versions 1 and 2 answer differently').to.not.deep.equal(oldV2);

    // The operator removes version 2 ...
    rmSync(path.join(repo.root, 'mlp', '2'), { recursive: true });
    await waitUntil(
      async () => {
        const res = await fetch(`${platform.baseUrl}/v1/models/mlp/events?limit=100`, { headers: { authorization: `Bearer ${ADMIN}` } });
        const events = ((await res.json()) as { data: ModelEvent[] }).data;
        return events.some((e) => e.type === 'version_unloaded' && e.data.version === '2' && e.data.state === 'draining');
      },
      10_000,
      'version 2 draining (its folder removed)',
    );
    // ... and puts a folder back under that version, atomically (copied beside it, then renamed), holding another model.
    const incoming = path.join(repo.root, 'mlp', '.incoming-2');
    cpSync(path.join(repo.root, 'mlp', '1'), incoming, { recursive: true });
    renameSync(incoming, path.join(repo.root, 'mlp', '2'));

    await waitUntil(
      async () => {
        const m = (await (await platform.api('/v1/models/mlp')).json()) as ModelDescription;
        return m.versions_detail.find((d) => d.version === '2')?.state === 'ready';
      },
      20_000,
      'version 2 ready again',
    );
    const newV2 = await out('2');
    expect(newV2, 'version 2 runs the model.onnx now in its folder (a copy of version 1), not the file that was removed').to.deep.equal(v1);
  });
});
