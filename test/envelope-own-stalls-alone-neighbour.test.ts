import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, interactiveQueue } from '@infer/contract';
import { EnvelopeQueue } from '@infer/job-store';
import { postJob } from './helpers/jobs.js';
import { startStalledCheck, type StalledCheck } from './helpers/stalled-check.js';
import { int32DivModel } from './helpers/int-graphs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { WorkerProcesses } from './helpers/worker-process.js';
import { waitUntil } from './helpers/wait.js';

/**
 * An envelope taken in the same take as one that runs alone (a stall of its
 * own before) waits for the alone envelope's first job, which runs before
 * its batch. When that job kills the worker, the neighbour was only held
 * beside the run that killed it (docs/api.md): it is taken as new, with no
 * stall of its own. (FETCH used to note it as running next, `rt`, and the
 * stall counted against it.)
 */
describe('own stalls: a neighbour of an envelope that runs alone', function () {
  this.timeout(120_000);
  let repo: TempModelRepo | undefined;
  let p: TestPlatform | undefined;
  let redis: Redis | undefined;
  let checker: StalledCheck | undefined;
  const workers = new WorkerProcesses({ WORKER_LOCK_MS: '1000' });

  before(async () => {
    repo = tempModelRepo({ idiv: { onnx: int32DivModel(), config: { max_batch_size: 8, max_delay_ms: 20 } } });
    p = await startPlatform({ models: repo.root, worker: false, env: { WORKER_LOCK_MS: '1000' } });
    redis = new Redis(p.config.redisUrl);
  });
  after(async () => {
    await workers.stop();
    await checker?.close();
    redis?.disconnect();
    await p?.close();
    repo?.remove();
  });

  it('a fresh envelope taken with an alone one that crashes its worker is not charged the stall', async () => {
    const k = interactiveKeys(p!.prefix, 'idiv', '1');
    // A: a crashing input, its envelope left as a take whose run stalled left it (the next take counts it its own).
    await postJob(p!, { model: 'idiv', input: { a: [-2147483648], b: [-1] } });
    const [a] = await waitUntil(async () => {
      const wait = await redis!.lrange(k.wait, 0, -1);
      return wait.length === 1 ? wait : null;
    }, 10_000, 'envelope A queued');
    const at = String(Date.now());
    await redis!.hset(k.base + a!, { processedOn: at, ft: at, ats: '1', rt: '1', stc: '1' });
    // B: a good job, its own envelope, queued behind A.
    await postJob(p!, { model: 'idiv', input: { a: [84], b: [2] } });
    const wait = await waitUntil(async () => {
      const w = await redis!.lrange(k.wait, 0, -1);
      return w.length === 2 ? w : null;
    }, 10_000, 'envelope B queued');
    const b = wait.find((id) => id !== a)!;

    // One worker takes both in one take (A runs alone, B in a batch) and dies on A's input.
    const { exit } = workers.start(p!);
    await waitUntil(() => exit() ?? null, 60_000, 'the worker to die on A');
    // What it noted on B: its take's `rt` (take 1), though A's run came first.
    const noted = await redis!.hmget(k.base + b, 'rt', 'ats');

    // BullMQ's stalled check puts both back.
    const ref = interactiveQueue(p!.prefix, 'idiv', '1');
    checker = startStalledCheck(p!.config.redisUrl, ref);
    await waitUntil(async () => ((await redis!.llen(k.wait)) === 2 ? true : null), 15_000, 'both put back by the stalled check');
    await checker.close();
    checker = undefined;

    // The next take (as a worker's): B should come back as new, with no stall of its own.
    const queue = new EnvelopeQueue(redis!, { prefix: p!.prefix, model: 'idiv', version: '1', resultTtlMs: 60_000 });
    const outcome = await queue.fetch('next-take', 60_000, 8, 64, { runsNext: false });
    expect(outcome).to.not.equal('paused');
    const taken = (outcome as Exclude<typeof outcome, 'paused'>).envelopes;
    const takenB = taken.find((e) => e.id === b)!;
    const takenA = taken.find((e) => e.id === a)!;
    expect(takenA.ownStalls, 'A owns its stall').to.equal(2);
    expect({ ownStalls: takenB.ownStalls, notedOnB: noted }, 'B was only held beside A\'s run: it should be taken as new').to.deep.include({ ownStalls: 0 });
  });
});
