import { expect } from 'chai';
import type { Rollout } from '@infer/contract';
import { mlpFeatures } from './helpers/batches.js';
import { servedMlpRepo, type TempModelRepo } from './helpers/model-repo.js';
import { startPlatform, type TestPlatform } from './helpers/platform.js';
import { waitUntil } from './helpers/wait.js';

/**
 * docs/rollouts.md: a step is judged by the candidate's jobs that ended
 * during it, and a job still queued at its Cancel-After deadline counts as
 * failed. A candidate that keeps its clients waiting past their deadlines
 * (no worker takes its jobs in time) is failing them: the rollout rolls
 * back, naming the error rate, rather than being held at its first step
 * for ever ("no job of the candidate ended yet") with a share of the
 * traffic going nowhere. Whoever ends such a job counts it: the workers
 * (their sweep, or a take that finds the deadline passed) and a gateway
 * that reads the job past its deadline.
 */
const ADMIN = 'rollout-deadlines-admin';

describe('rollouts: candidate jobs that end deadline_exceeded', function () {
  this.timeout(60_000);
  let repo: TempModelRepo | undefined;
  let p: TestPlatform | undefined;

  afterEach(async () => {
    await p?.close();
    p = undefined;
    repo?.remove();
    repo = undefined;
  });

  const admin = (pathname: string, init: RequestInit = {}) =>
    fetch(p!.baseUrl + pathname, { ...init, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' } });

  async function startRollout(): Promise<Rollout> {
    expect((await admin('/v1/models/mlp/routing', { method: 'PUT', body: JSON.stringify({ weights: { '1': 100 } }) })).status).to.equal(200);
    // Every job to the candidate: the step's figures are its alone.
    const res = await admin('/v1/models/mlp/rollouts', { method: 'POST', body: JSON.stringify({ version: '2', steps: [100], step_seconds: 1, max_error_rate: 0.01 }) });
    expect(res.status, await res.clone().text()).to.equal(201);
    return (await res.json()) as Rollout;
  }

  async function ended(rollout: Rollout): Promise<Rollout> {
    let last: Rollout | undefined;
    try {
      await waitUntil(
        async () => {
          last = (await (await admin(`/v1/models/mlp/rollouts/${rollout.id}`)).json()) as Rollout;
          return last.state !== 'running';
        },
        20_000,
        'the rollout to end',
      );
    } catch {
      expect(last?.state, `rollout ${rollout.id}, ${Math.round((Date.now() - Date.parse(rollout.started_at)) / 1000)} s after its 1 s step`).to.not.equal('running');
    }
    return last!;
  }

  async function submitWithDeadline(i: number, prefer?: string): Promise<Response> {
    const headers: Record<string, string> = { 'cancel-after': '200ms' };
    if (prefer) headers.prefer = prefer;
    return p!.api('/v1/jobs', { method: 'POST', headers, body: JSON.stringify({ model: 'mlp', input: { features: mlpFeatures(i) } }) });
  }

  it('counted by the worker that finds them past their deadline: the rollout rolls back on the error rate', async () => {
    repo = servedMlpRepo(['1', '2']);
    p = await startPlatform({ models: repo.root, env: { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0.2' } });
    const rollout = await startRollout();
    // No worker now: the jobs wait in the candidate's queue past their deadlines.
    await p.closeWorker();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await submitWithDeadline(i);
      expect(res.status).to.equal(202);
      const job = (await res.json()) as { id: string; version: string };
      expect(job.version).to.equal('2');
      ids.push(job.id);
    }
    const submitted = Date.now();
    await waitUntil(async () => Date.now() > submitted + 300, 5_000, 'the deadlines to pass');
    await p.startWorker();

    const last = await ended(rollout);
    expect(last.state).to.equal('rolled_back');
    expect(last.reason).to.match(/error rate/);
    for (const id of ids) {
      const job = (await (await p.api(`/v1/jobs/${id}`)).json()) as { status: string; error: { code: string } | null };
      expect(job).to.deep.include({ status: 'canceled' });
      expect(job.error?.code).to.equal('deadline_exceeded');
    }
  });

  it('counted by the gateway that ends them at a read (no worker left): the rollout rolls back on the error rate', async () => {
    repo = servedMlpRepo(['1', '2']);
    p = await startPlatform({ models: repo.root, env: { ADMIN_API_KEYS: `ops:${ADMIN}`, MODEL_POLL_SECONDS: '0.2' } });
    const rollout = await startRollout();
    await p.closeWorker();
    for (let i = 0; i < 3; i++) {
      // The gateway holds the answer past the deadline, and ends the job then.
      const res = await submitWithDeadline(i, 'wait=2');
      expect(res.status).to.equal(200);
      const job = (await res.json()) as { version: string; status: string; error: { code: string } | null };
      expect(job).to.deep.include({ version: '2', status: 'canceled' });
      expect(job.error?.code).to.equal('deadline_exceeded');
    }
    const last = await ended(rollout);
    expect(last.state).to.equal('rolled_back');
    expect(last.reason).to.match(/error rate/);
  });
});
