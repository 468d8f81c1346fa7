import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect } from 'chai';
import { ModelRepository } from '@infer/models';
import { FIXTURE_MODELS, REPO_ROOT } from './helpers/platform.js';

/**
 * A version's `error` is shown to every tenant in GET /v1/models/{name}
 * (`versions_detail[].error`): it names the file within the repository,
 * never a server path. A model.onnx the process cannot read failed with
 * Node's own message, which quoted the absolute path; it now says
 * `1/model.onnx: could not be read (EACCES)`, as config.json's errors name
 * `1/config.json`.
 */
describe('models: the error of a version whose model.onnx cannot be read', function () {
  this.timeout(60_000);
  let root: string;
  before(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'unreadable-model-'));
    mkdirSync(path.join(root, 'm', '1'), { recursive: true });
    copyFileSync(path.join(FIXTURE_MODELS, 'add-fixed', '1', 'model.onnx'), path.join(root, 'm', '1', 'model.onnx'));
    chmodSync(root, 0o755);
    chmodSync(path.join(root, 'm', '1', 'model.onnx'), 0o000);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('does not quote the server path of an unreadable model.onnx', async () => {
    let failed: Array<{ error: string }>;
    if (process.getuid?.() === 0) {
      // Root reads any file: load the repository in a process without that power instead.
      const script = path.join(root, 'probe.mts');
      const entry = pathToFileURL(path.join(REPO_ROOT, 'packages', 'models', 'src', 'index.ts')).href;
      writeFileSync(script, `import { ModelRepository } from '${entry}';\nconst r = await ModelRepository.load(process.argv[2]!);\nconsole.log(JSON.stringify(r.failed()));\nawait r.close();\n`);
      try {
        const node = [process.execPath, '--import', 'tsx', script, root];
        // Root without the capabilities that let it pass file permissions: it still reads the project wherever
        // it lies (a clone in a folder only root may enter, as mktemp makes). Where util-linux's setpriv is
        // missing, an unprivileged user, who needs to be able to read the project.
        const out = hasSetpriv()
          ? spawnSync('setpriv', ['--bounding-set', '-dac_override,-dac_read_search', '--inh-caps', '-dac_override,-dac_read_search', '--', ...node], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 50_000 })
          : spawnSync(node[0]!, node.slice(1), { cwd: REPO_ROOT, uid: 65534, gid: 65534, encoding: 'utf8', timeout: 50_000 });
        expect(out.status, out.stderr).to.equal(0);
        failed = JSON.parse(out.stdout.trim().split('\n').pop()!) as Array<{ error: string }>;
      } finally {
        rmSync(script, { force: true });
      }
    } else {
      const repo = await ModelRepository.load(root);
      failed = repo.failed();
      await repo.close();
    }
    expect(failed, 'the version failed').to.have.length(1);
    expect(failed[0]!.error, 'the error a tenant reads in versions_detail').to.not.include(root);
    expect(failed[0]!.error).to.equal('1/model.onnx: could not be read (EACCES)');
  });
});

function hasSetpriv(): boolean {
  return spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status === 0;
}
