/**
 * Statements of the docs a newcomer follows literally, checked as written.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ModelRepository } from '@infer/models';
import { collected } from './helpers/cli.js';
import { REPO_ROOT, SHIPPED_MODELS } from './helpers/platform.js';

/** `cmd args` run in `cwd`, with none of this process's NODE_OPTIONS (mocha's tsx loader): as a newcomer types it. */
const run = (cmd: string, args: string[], cwd: string) => collected(spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } }));

describe('docs: what a newcomer follows literally', function () {
  this.timeout(60_000);

  it('docs/cli.md: outside the repository, `node <repo>/apps/cli/bin/infer.js` runs the CLI', async () => {
    const cli = readFileSync(path.join(REPO_ROOT, 'docs', 'cli.md'), 'utf8');
    expect(cli).to.include('`node <repo>/apps/cli/bin/infer.js`');
    const elsewhere = mkdtempSync(path.join(os.tmpdir(), 'docs-cli-'));
    try {
      // Exactly the documented command, typed in a folder outside the repository.
      const r = await run(process.execPath, [path.join(REPO_ROOT, 'apps', 'cli', 'bin', 'infer.js'), '--help'], elsewhere);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.include('Usage: infer');
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });

  it('README: a model folder name is up to 128 letters, digits, `_`, `.`, `-`, the first a letter or digit; others are skipped', async () => {
    const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    expect(readme.replace(/\s+/g, ' ')).to.include('(`name`: up to 128 letters, digits, `_`, `.`, `-`, the first a letter or digit; a folder named otherwise is not a model and is skipped;');
    const repo = mkdtempSync(path.join(os.tmpdir(), 'docs-models-'));
    try {
      const names = ['mlp', 'a_1.b-2', '_scratch', '-x', `m${'x'.repeat(128)}`, `m${'x'.repeat(127)}`];
      for (const name of names) {
        mkdirSync(path.join(repo, name, '1'), { recursive: true });
        copyFileSync(path.join(SHIPPED_MODELS, 'mlp', '1', 'model.onnx'), path.join(repo, name, '1', 'model.onnx'));
      }
      const models = await ModelRepository.load(repo, { purpose: 'describe' });
      expect(models.names().sort()).to.deep.equal(['a_1.b-2', 'mlp', `m${'x'.repeat(127)}`].sort());
      await models.close();
    } finally {
      rmSync(repo, { recursive: true, force: true });
    }
  });
});
