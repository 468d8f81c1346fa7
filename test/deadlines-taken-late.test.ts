import { expect } from 'chai';
import { Redis } from 'ioredis';
import { interactiveKeys, isEnded, type Job } from '@infer/contract';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { cubicModel } from './helpers/slow-models.js';
import type { Spawned } from './helpers/spawned.js';
import { waitUntil } from './helpers/wait.js';
import { startWorkerProcess } from './helpers/worker-process.js';

/**
 * A Cancel-After deadline that passes while the job is still
 * queued, its envelope then taken by a busy worker (after the deadline, before
 * any deadline sweep reached it).
 *
 * docs/api.md: "A job still queued at its deadline ends `canceled` with
 * `error.code` `deadline_exceeded` and never runs"; a cancel of such a job is
 * 409 (test/cancel-past-deadline.test.ts); `started_at` is "when a worker
 * started it". The worker decides at the take (InteractiveWorker.expire, by
 * the envelope's first take `ft`) that the job is past its deadline, and
 * writes its record only with the envelope's other jobs, after their run. The
 * take has stamped the envelope `processedOn` meanwhile: a read in that window
 * must not say `running` (nor a cancel commit as a running job's), but find
 * the job ended `deadline_exceeded`, as the gateway then ends it.
 */

const LEN = 2048;
const body = (extra: Record<string, unknown> = {}) => JSON.stringify({ model: 'cubic', version: '1', input: { x: new Array(LEN).fill(0) }, ...extra });

describe('a job taken after its Cancel-After deadline by a busy worker', function () {
  this.timeout(180_000);
  let repo: TempModelRepo;
  let p: TestPlatform;
  let redis: Redis;
  let w: Spawned | undefined;

  before(async () => {
    repo = tempModelRepo({ cubic: { onnx: cubicModel(8), config: { max_batch_size: 1, max_delay_ms: 0 } } });
    p = await startPlatform({ models: repo.root, worker: false });
    redis = new Redis(p.config.redisUrl);
    w = await startWorkerProcess(p, 'cubic');
  });
  after(async () => {
    w?.kill();
    await w?.exited;
    redis?.disconnect();
    await p?.close();
    repo?.remove();
  });

  /** Saturate the worker, submit the probe with a 50 ms Cancel-After, and return once a take of its envelope is seen (after the deadline). */
  async function probeTakenLate(ctx: Mocha.Context): Promise<{ x: Job; slow: string[] }> {
    const k = interactiveKeys(p.prefix, 'cubic', '1');
    // Saturate the worker: it holds two (one running, one in hand: room 0, no take outstanding), the third waits.
    const slow: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await p.api('/v1/jobs', { method: 'POST', body: body() });
      expect(r.status, await r.clone().text()).to.equal(202);
      slow.push(((await r.json()) as Job).id);
    }
    await waitUntil(async () => (await redis.llen(k.wait)) === 1 && (await redis.llen(k.active)) === 2, 30_000, 'the worker to hold two slow jobs, the third waiting');
    const res = await p.api('/v1/jobs', { method: 'POST', body: body({ metadata: { probe: true } }), headers: { 'cancel-after': '50ms' } });
    expect(res.status).to.equal(202);
    const x = (await res.json()) as Job;
    const deadline = Date.parse(x.created_at) + 50;
    const where = await redis.hget(k.index, x.id);
    expect(where, 'the probe is queued').to.be.a('string');
    const envelopeKey = `${k.ref.prefix}:${where}`;
    // Watch Redis only (a GET would end it at the gateway): the take of its envelope, or its end.
    const seen = await waitUntil(
      async () => {
        const taken = await redis.hget(envelopeKey, 'processedOn');
        if (taken) return { taken: Number(taken) };
        if ((await redis.exists(`${k.ref.prefix}:job:${x.id}`)) === 1) return { taken: null };
        return undefined;
      },
      60_000,
      'the probe to be taken or ended',
    );
    if (seen.taken === null) {
      // A deadline sweep got there first: nothing to probe this time.
      await endOf(slow);
      ctx.skip();
    }
    expect(seen.taken!, 'taken after its deadline').to.be.greaterThan(deadline);
    return { x, slow };
  }

  async function endOf(ids: string[]): Promise<Job[]> {
    const out: Job[] = [];
    for (const id of ids) {
      out.push(
        await waitUntil(async () => {
          const j = (await (await p.api(`/v1/jobs/${id}`)).json()) as Job;
          return isEnded(j.status) ? j : undefined;
        }, 60_000, `job ${id} to end`),
      );
    }
    return out;
  }

  it('a cancel in the window between the take and its end is 409, the job ending deadline_exceeded (not a client cancel of a running job)', async function () {
    const { x, slow } = await probeTakenLate(this);
    // In the window between the take and the worker's end of its envelope.
    const read = (await (await p.api(`/v1/jobs/${x.id}`)).json()) as Job;
    const cancel = await p.api(`/v1/jobs/${x.id}/cancel`, { method: 'POST' });
    const cancelText = await cancel.text();
    const [ended] = await endOf([x.id]);
    await endOf(slow);
    const summary = { read: [read.status, read.started_at !== null], cancel: cancel.status, ended: [ended!.status, ended!.error?.code, ended!.started_at] };
    expect(summary, `${JSON.stringify(summary)} cancel said ${cancelText}`).to.deep.equal({ read: ['canceled', false], cancel: 409, ended: ['canceled', 'deadline_exceeded', null] });
  });

  it('a job read running (started_at set) does not end as never started (started_at null)', async function () {
    const { x, slow } = await probeTakenLate(this);
    const read = (await (await p.api(`/v1/jobs/${x.id}`)).json()) as Job;
    const [ended] = await endOf([x.id]);
    await endOf(slow);
    const seq = { read: [read.status, read.started_at], ended: [ended!.status, ended!.error?.code, ended!.started_at] };
    // Either it was not running (queued/canceled at the read), or it ends with the started_at it was read with.
    if (read.status === 'running') expect(ended!.started_at, JSON.stringify(seq)).to.equal(read.started_at);
    else expect(read.status, JSON.stringify(seq)).to.equal('canceled');
  });
});
