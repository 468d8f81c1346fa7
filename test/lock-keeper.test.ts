import { expect } from 'chai';
import { createLogger } from '@infer/logger';
import { LockKeeper } from '../apps/worker/src/consumer/lock-keeper.js';
import { waitUntil } from './helpers/wait.js';

/** The warnings a pino logger wrote, by job id. */
class Warnings {
  readonly lines: Array<{ jobId?: string; msg: string; level: number }> = [];
  write(line: string): void {
    this.lines.push(JSON.parse(line) as { jobId?: string; msg: string; level: number });
  }
  lostFor(id: string): number {
    return this.lines.filter((l) => l.jobId === id && l.msg.startsWith('lost the lock')).length;
  }
}

describe('LockKeeper: renewing the locks of held jobs', function () {
  this.timeout(20_000);

  it('reports a lock lost only when a held job fails two renewals in a row, and only once; a job ended meanwhile is never reported', async () => {
    const log = new Warnings();
    // Each renewal answers the ids it could not renew; `script` says which, call by call.
    const script: string[][] = [
      ['ended', 'flaky'], // 1: "ended" was removed in Redis by its end, whose answer is not back yet; "flaky" fails once
      ['lost'], //          2: "lost" fails (its lock expired and another worker took the job)
      ['lost', 'flaky'], // 3: "lost" again (reported); "flaky" fails once more, but not twice in a row
      ['lost'], //          4: "lost" again: already reported
    ];
    const calls: string[][] = [];
    const keeper = new LockKeeper(
      1000, // renews every 500 ms
      async (ids) => {
        calls.push([...ids]);
        const failed = script[calls.length - 1] ?? [];
        // "ended"'s end answers just after this renewal's answer has been read: released only then.
        if (calls.length === 1) setImmediate(() => keeper.release('ended'));
        return failed;
      },
      createLogger({ level: 'warn', name: 'worker', destination: log }),
    );
    try {
      for (const id of ['ended', 'flaky', 'lost']) keeper.hold(id, `token-${id}`);
      await waitUntil(() => calls.length >= 4, 10_000, 'four renewals');
      expect(calls[0]).to.have.members(['ended', 'flaky', 'lost']);
      expect(calls[1], 'a job released after a failed renewal is not renewed again').to.have.members(['flaky', 'lost']);
      expect(log.lostFor('ended'), 'a job that ended as its renewal failed').to.equal(0);
      expect(log.lostFor('flaky'), 'failures not in a row').to.equal(0);
      expect(log.lostFor('lost'), 'two failures in a row, reported once').to.equal(1);
    } finally {
      keeper.stop();
    }
  });
});
