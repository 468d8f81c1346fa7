import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { BulkChunkPayload, bulkQueue } from '@infer/contract';
import { BatchStore } from '@infer/batch-store';
import { noteRunning, runningNote } from '@infer/job-store';
import { decodeChunk, runChunk } from '../apps/worker/src/bulk/bulk-runner.js';
import { submitBatch } from './helpers/batches.js';
import { int32DivModel } from './helpers/int-graphs.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * The bulk crash containment (bulk-worker.ts `alone`, bulk-runner.ts): a
 * chunk taken again after a stall notes each row on its BullMQ job
 * (MARK_RUNNING) before its run, and clears the note once the run is over.
 * Between two rows BulkWorker yields to the interactive worker of the same
 * process, and other model versions run: a crash there must leave no row
 * named, or the next take would fail a row that ran fine.
 *
 * runChunk is driven here with hooks as BulkWorker.alone builds them; the
 * note is read during each run's turn and where the worker yields between rows.
 */
describe('bulk row notes live only while their row runs', function () {
  this.timeout(60_000);
  let repo: TempModelRepo | undefined;
  let p: TestPlatform | undefined;
  let redis: Redis | undefined;
  let queue: Queue | undefined;
  let queueConnection: Redis | undefined;

  before(async () => {
    repo = tempModelRepo({ idiv: { onnx: int32DivModel(), config: { max_batch_size: 8, max_delay_ms: 20 } } });
    p = await startPlatform({ models: repo.root, worker: false });
    redis = new Redis(p.config.redisUrl);
  });
  after(async () => {
    await queue?.close();
    queueConnection?.disconnect();
    redis?.disconnect();
    await p?.close();
    repo?.remove();
  });

  it('between two rows of a chunk run alone, no row is noted as running', async () => {
    const rows = [
      [100, 2],
      [101, 2],
      [102, 2],
    ];
    const batch = await submitBatch(p!, { json: { model: 'idiv', items: rows.map(([a, b]) => ({ input: { a: [a], b: [b] } })) } });
    const ref = bulkQueue(p!.prefix, 'idiv', '1');
    queueConnection = new Redis(p!.config.redisUrl, { maxRetriesPerRequest: null });
    queue = new Queue(ref.name, { prefix: ref.prefix, connection: queueConnection });
    const [job] = await waitUntil(async () => {
      const jobs = await queue!.getWaiting();
      return jobs.length > 0 ? jobs : null;
    }, 10_000, 'the chunk to be queued');
    const payload = BulkChunkPayload.parse(job!.data);
    expect(payload.batch).to.equal(batch.id);
    const store = new BatchStore(redis!, { prefix: p!.prefix, resultTtlMs: 600_000 });
    const packed = await store.chunkInputs(payload.batch, payload.chunk);
    const model = p!.gateway.models.resolve('idiv', '1');

    // BulkWorker.alone's hooks, as for a chunk whose own run stalled before and no row blamed yet, held under take `tok`.
    const jobKey = `${ref.prefix}:${ref.name}:${job!.id!}`;
    await redis!.set(`${jobKey}:lock`, 'tok', 'PX', 60_000);
    const note = (value: string) => async () => {
      expect(await noteRunning(redis!, jobKey, 'tok', value)).to.equal(true);
    };
    const seenDuringRuns: Array<string | undefined> = [];
    const seenBetweenRows: Array<string | undefined> = [];
    let slice = 0;
    const result = await runChunk(model, payload, decodeChunk(model, payload, packed!), {
      limits: { maxOutputBytes: 1 << 20, callOutputBytes: 1 << 28 },
      beforeSlice: async () => {
        // Where BulkWorker yields to interactive work (whenIdle): the previous row's run is over, the next one's not begun.
        if (slice++ > 0) seenBetweenRows.push(await runningNote(redis!, jobKey));
        return true;
      },
      alone: {
        blamed: undefined,
        watch: (offset) => ({
          before: async () => {
            await note(String(offset))();
            seenDuringRuns.push(await runningNote(redis!, jobKey));
          },
          after: note(''),
        }),
      },
    });
    expect(seenDuringRuns, 'each row noted before its run').to.deep.equal(['0', '1', '2']);
    expect(result.succeeded).to.equal(3);
    expect(result.runs.map((r) => r.size), 'one row a run').to.deep.equal([1, 1, 1]);
    // A process dying at either of these points would have its next take fail the named row, which ran fine.
    expect(seenBetweenRows, 'the note between rows (a crash here blames the row named)').to.deep.equal([undefined, undefined]);
  });
});
