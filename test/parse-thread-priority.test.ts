import { expect } from 'chai';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { submitBatch, waitForBatchEnd } from './helpers/batches.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';

/**
 * The gateway's batch parse thread runs below the event loops' priority
 * (nice 10, PRIORITY_BELOW_NORMAL): an upload is background work, and on a
 * busy machine a waiting interactive request's turn comes first (the
 * batches bench: a job's median under a 200,000-row upload went from
 * 8.2 ms to 4.7 ms on 2 cores). Only that thread: the gateway's own event
 * loop keeps the process's priority. Linux names threads by id in
 * setpriority; read back from /proc, as `ps -L -o nice` would.
 */
describe("the batch parse thread runs below the gateway's event loop", function () {
  this.timeout(60_000);
  let p: TestPlatform;

  before(async function () {
    if (!existsSync('/proc/thread-self')) this.skip(); // not Linux: the thread keeps the process's priority
    // Run under `nice 10` or more already: the thread keeps the process's (it is never put above the event loop).
    if (os.getPriority() >= os.constants.priority.PRIORITY_BELOW_NORMAL) this.skip();
    p = await startPlatform(); // BATCH_PARSE_THREAD is on by default
  });
  after(async () => {
    await p?.close();
  });

  /** Each thread of this process (the gateway runs in it) and its nice value. */
  const niceness = (): Map<number, number> => {
    const out = new Map<number, number>();
    for (const tid of readdirSync('/proc/self/task')) {
      try {
        const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
        // Fields after the command (which may hold spaces) in parentheses: state is the 3rd field, nice the 19th.
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        out.set(Number(tid), Number(fields[16]));
      } catch {
        /* the thread ended meanwhile */
      }
    }
    return out;
  };

  it('nice 10 for the thread that parses uploads; the event loop as it was', async () => {
    const before = niceness();
    const ndjson = Array.from({ length: 50 }, () => JSON.stringify({ input: { features: new Array(64).fill(0.5) } })).join('\n');
    const batch = await submitBatch(p, { ndjson, query: 'model=mlp' });
    await waitForBatchEnd(p, batch.id, 30_000);
    const after = niceness();
    const lowered = [...after].filter(([tid, nice]) => nice === os.constants.priority.PRIORITY_BELOW_NORMAL && before.get(tid) !== nice);
    expect(lowered, JSON.stringify([...after])).to.have.length(1);
    expect(after.get(process.pid), 'the main thread').to.equal(before.get(process.pid));
    expect(os.getPriority(), 'the process').to.equal(before.get(process.pid));
  });
});
