/** MODEL_POLL_SECONDS is how often the folder is looked at, below one second too. */
import { expect } from 'chai';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { elapse } from './helpers/wait.js';

describe('lifecycle: MODEL_POLL_SECONDS below one second', function () {
  this.timeout(30_000);
  let p: TestPlatform | undefined;
  afterEach(async () => {
    await p?.close();
    p = undefined;
  });

  it('MODEL_POLL_SECONDS=0.2 looks at the folder about every 0.2 s, not once a second', async () => {
    p = await startPlatform({ worker: false, env: { MODEL_POLL_SECONDS: '0.2' } });
    expect(p.config.modelPollMs).to.equal(200);
    const repo = p.gateway.models;
    const original = repo.rescan.bind(repo);
    let looks = 0;
    repo.rescan = (skip) => {
      looks++;
      return original(skip);
    };
    try {
      await elapse(3000, 'the polling period itself is under test: how many looks 3 s hold');
    } finally {
      repo.rescan = original;
    }
    // Every 0.2 s: about 15 looks in 3 s. Allow for a loaded machine: at least 8.
    expect(looks, `looks at the folder in 3 s with MODEL_POLL_SECONDS=0.2`).to.be.at.least(8);
  });
});
