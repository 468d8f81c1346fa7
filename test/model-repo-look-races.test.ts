/** The model repository's look, when a version folder vanishes while it is being looked at. */
import { execFileSync } from 'node:child_process';
import { constants, cpSync, mkdirSync, openSync, closeSync, readFileSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { ModelRepository } from '@infer/models';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { SHIPPED_MODELS } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

const SERVED_MLP = path.join(SHIPPED_MODELS, 'mlp');

/** Open the FIFO's writing end once a reader is waiting on it (ENXIO until then). */
function writerOnceRead(fifo: string): number | undefined {
  try {
    return openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENXIO') return undefined;
    throw err;
  }
}

describe('lifecycle: a version folder removed while the repository is looked at', function () {
  this.timeout(30_000);
  let repo: TempModelRepo | undefined;
  let models: ModelRepository | undefined;
  let writer: number | undefined;
  afterEach(async () => {
    if (writer !== undefined) closeSync(writer);
    writer = undefined;
    await models?.close();
    models = undefined;
    repo?.remove();
    repo = undefined;
  });

  it('a removed version is still reported gone (so it drains) when, in the same look, another new folder disappears before it is read', async () => {
    repo = servedMlpRepo(['1', '2']);
    models = await ModelRepository.load(repo.root, { purpose: 'describe' });
    expect(models.all().map((v) => v.version)).to.deep.equal(['1', '2']);
    const dir = (v: string) => path.join(repo!.root, 'mlp', v);

    // An operator retires version 1 (rm -r models/mlp/1) ...
    rmSync(dir('1'), { recursive: true });
    // ... while versions 3 and 4 are being copied in: 3's model.onnx is still arriving (a slow file system:
    // here a FIFO, so the look is held reading it), 4 is there.
    mkdirSync(dir('3'));
    execFileSync('mkfifo', [path.join(dir('3'), 'model.onnx')]);
    cpSync(path.join(SERVED_MLP, '2'), dir('4'), { recursive: true, dereference: true });

    const look = models.rescan();
    await waitUntil(() => (writer = writerOnceRead(path.join(dir('3'), 'model.onnx'))) !== undefined, 10_000, 'the look to read version 3');
    // While version 3 is read, version 4's copy is pulled back (a deploy script undoing itself).
    rmSync(dir('4'), { recursive: true });
    writeSync(writer!, readFileSync(path.join(SERVED_MLP, '2', 'model.onnx')));
    closeSync(writer!);
    writer = undefined;

    const first = await look.then(
      (changes) => ({ changes, error: undefined }),
      (error: unknown) => ({ changes: undefined, error: error as Error }),
    );
    const second = await models.rescan();
    const removed = [...(first.changes?.removed ?? []), ...second.removed].map((v) => v.version);
    expect(
      removed,
      `version 1's folder is gone, so a look must report it removed (the watcher then marks it draining); ` +
        `the first look ${first.error ? `threw "${first.error.message}"` : 'returned'} and the second reported removed=[${second.removed.map((v) => v.version).join(',')}]`,
    ).to.deep.equal(['1']);
  });
});

