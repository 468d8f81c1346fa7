import { expect } from 'chai';
import { dropRunMark, holdRunMark, ModelRepository, runModel, runsUnderWay, type RunMark } from '@infer/models';
import { SHIPPED_MODELS } from './helpers/platform.js';

/**
 * A mark some work holds in Redis while its runs go on (a bulk chunk's run
 * note) is cleared, and known cleared, before a run of any other work in
 * the process starts: should that run kill the process, the work was only
 * beside it. A run of the mark's own work leaves it.
 */
describe('models: run marks and runs under way', function () {
  this.timeout(60_000);
  let repo: ModelRepository;
  before(async () => {
    repo = await ModelRepository.load(SHIPPED_MODELS);
  });
  after(async () => {
    await repo.close();
  });

  const feeds = () => ({ features: { datatype: 'FP32' as const, shape: [1, 64], data: new Float32Array(64) } });

  it("clears another's mark before a run, not its own work's; once cleared it is no longer held", async () => {
    const model = repo.resolve('mlp', '2');
    const order: string[] = [];
    const mark: RunMark = {
      clear: async () => {
        await new Promise((r) => setTimeout(r, 20));
        order.push('cleared');
      },
    };
    holdRunMark(mark);
    await runModel(model, feeds(), { marks: [mark], before: async () => void order.push('own run'), after: async () => undefined });
    expect(order).to.deep.equal(['own run']);
    await runModel(model, feeds(), { before: async () => void order.push("another's run"), after: async () => undefined });
    expect(order).to.deep.equal(['own run', 'cleared', "another's run"]);
    await runModel(model, feeds());
    expect(order, 'cleared once').to.have.length(3);
  });

  it('a mark held while a run waits for the clears before it (a take read then) is cleared before that run starts too', async () => {
    const model = repo.resolve('mlp', '2');
    const cleared: string[] = [];
    const first: RunMark = { clear: () => new Promise((r) => setTimeout(() => r(void cleared.push('first')), 20)) };
    const late: RunMark = { clear: async () => void cleared.push('late') };
    holdRunMark(first);
    // Held 5 ms in, while the run below waits for `first` to be cleared.
    const lateHold = setTimeout(() => holdRunMark(late), 5);
    let seen: string[] = [];
    try {
      await runModel(model, feeds(), { before: async () => void (seen = [...cleared]), after: async () => undefined });
    } finally {
      clearTimeout(lateHold);
      dropRunMark(late);
    }
    expect(seen, 'cleared before the run').to.deep.equal(['first', 'late']);
  });

  it("a mark held while the run's own watch is being told is cleared before the run starts", async () => {
    const model = repo.resolve('mlp', '2');
    const cleared: string[] = [];
    const late: RunMark = { clear: async () => void cleared.push('late') };
    let atRun: string[] = [];
    try {
      await runModel(model, feeds(), {
        // A watch that waits on Redis (a chunk's note set again); a take's reply is read meanwhile.
        before: () => new Promise((r) => setTimeout(() => r(holdRunMark(late)), 5)),
        // Told after the run, in its turn: what was cleared by then was cleared before it started.
        after: async () => void (atRun = [...cleared]),
      });
    } finally {
      dropRunMark(late);
    }
    expect(atRun).to.deep.equal(['late']);
  });

  it('counts the runs asked for and not ended, waiting ones included', async () => {
    const model = repo.resolve('mlp', '2');
    // Counted from what this process has under way now (mocha runs every file in one process).
    const before = runsUnderWay();
    const runs = [runModel(model, feeds()), runModel(model, feeds())];
    expect(runsUnderWay()).to.equal(before + 2);
    await Promise.all(runs);
    expect(runsUnderWay()).to.be.at.most(before);
  });
});
