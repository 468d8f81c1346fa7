import { createServer, type Server } from 'node:net';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { isEnded, type Job } from '@infer/contract';
import { RestartBudget } from '../scripts/lib/restarts.js';
import { TEST_KEY } from './helpers/platform.js';
import { freePort, shutDownIfAnswering } from './helpers/redis-server.js';
import { Spawned } from './helpers/spawned.js';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { int32DivModel } from './helpers/int-graphs.js';
import { waitUntil } from './helpers/wait.js';

/**
 * README: `npm start` restarts an app that crashes, a bounded number of
 * times. An input that makes ONNX Runtime trap kills the worker process (a
 * signal JavaScript cannot catch); the platform contains it (the job fails
 * alone, at the cost of two workers), but only if something starts workers
 * again. Each app tells start.ts over an IPC channel when it is ready and
 * when it begins stopping, so an app that never started (a port in use) or
 * was asked to stop is not restarted: only a crash is.
 */
describe('`npm start` restarts a crashed app', function () {
  this.timeout(150_000);
  let start: Spawned | undefined;
  let repo: TempModelRepo | undefined;
  let redisUrl = '';
  let port = 0;

  /** `npm start` on a throwaway redis-server of its own (nothing shared to clean), serving the `idiv` model (INT32 a / b). */
  async function npmStart(env: Record<string, string> = {}): Promise<Spawned> {
    repo = tempModelRepo({ idiv: { onnx: int32DivModel(), config: { max_batch_size: 8, max_delay_ms: 5 } } });
    redisUrl = `redis://127.0.0.1:${await freePort()}`;
    port = await freePort();
    start = new Spawned('start', {
      REDIS_URL: redisUrl,
      MODEL_REPOSITORY: repo.root,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      PORT: String(port),
      HOST: '127.0.0.1',
      WORKER_METRICS_PORT: '0',
      // A dead worker's envelopes go back to the queue after about a second, not 30.
      WORKER_LOCK_MS: '1000',
      ...env,
    });
    return start;
  }

  /** Both apps' start lines and start.ts's banner: they share one stdout, written by three processes, in no set order. */
  async function bothStarted(s: Spawned): Promise<void> {
    await s.waitForLog('Gateway on', 60_000);
    await s.waitForLog('gateway listening', 60_000, { name: 'gateway' });
    await s.waitForLog('worker started', 60_000, { name: 'worker' });
  }

  const api = (pathname: string, init: RequestInit = {}) =>
    fetch(`http://127.0.0.1:${port}${pathname}`, { ...init, headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', ...init.headers } });
  const div = (a: number, b: number) => JSON.stringify({ model: 'idiv', input: { a: [a], b: [b] } });
  const workerPids = () => start!.logged('worker started', 'worker').map((l) => l.pid as number);
  /** Until the app process `pid` has said it is ready (and told start.ts so): before that, a death is a failed start, not a crash. */
  const readyLogged = (pid: number) => waitUntil(() => start!.lines.some((l) => l.msg === 'ready' && l.pid === pid), 30_000, `process ${pid} to be ready`);

  afterEach(async () => {
    start?.kill();
    if (redisUrl) await shutDownIfAnswering(redisUrl);
    repo?.remove();
    start = undefined;
    repo = undefined;
  });

  it('an input that kills the worker (SIGFPE): the worker is restarted, the job fails alone (inference_failed), the next job runs; Ctrl-C then exits 0', async () => {
    const s = await npmStart();
    await bothStarted(s);
    const gatewayPid = s.logged('gateway listening', 'gateway')[0]!.pid;

    const res = await api('/v1/jobs', { method: 'POST', body: div(-2147483648, -1) });
    expect(res.status).to.equal(202);
    const { id } = (await res.json()) as Job;
    const ended = await waitUntil(
      async () => {
        const job = (await (await api(`/v1/jobs/${id}`)).json()) as Job;
        return isEnded(job.status) ? job : null;
      },
      120_000,
      `the poisoned job to end${s.tail()}`,
    );
    expect(ended.status).to.equal('failed');
    expect(ended.error?.code).to.equal('inference_failed');

    const restarts = s.logged('The worker died (signal SIGFPE); restarting it');
    expect(restarts.length, 'the worker restarts the input cost').to.be.within(1, 2);
    expect(s.logged('The gateway died'), 'the gateway never died').to.deep.equal([]);
    expect(new Set(workerPids()).size, 'a new worker process each time').to.equal(restarts.length + 1);

    // The platform still serves: the restarted worker runs the next job.
    await waitUntil(() => workerPids().length === restarts.length + 1, 30_000, 'the last restarted worker to start');
    const next = await api('/v1/jobs', { method: 'POST', body: div(7, 2), headers: { prefer: 'wait=20' } });
    const job = (await next.json()) as Job;
    expect(job.status, JSON.stringify(job)).to.equal('succeeded');
    expect(job.output).to.deep.equal({ y: [3] });
    expect(s.logged('gateway listening', 'gateway').map((l) => l.pid), 'one gateway all along').to.deep.equal([gatewayPid]);

    s.signalGroup('SIGINT');
    const exit = await s.exit(40_000);
    expect(exit.code, 'a crash that was restarted is not a failure of the session').to.equal(0);
    await waitUntil(() => !s.groupAlive(), 5_000, 'every process of the group to be gone');
  });

  it('a crash loop ends: past 5 restarts within 60 s it gives up, stops the gateway and its Redis, and exits 1', async () => {
    const s = await npmStart();
    await bothStarted(s);
    for (let killed = 0; killed < 6; killed++) {
      await waitUntil(() => workerPids().length === killed + 1, 60_000, `worker start ${killed + 1}${s.tail()}`);
      await readyLogged(workerPids()[killed]!);
      // As the kernel's OOM killer would.
      process.kill(workerPids()[killed]!, 'SIGKILL');
      if (killed < 5) await s.waitForLog(`The worker died (signal SIGKILL); restarting it`, 10_000);
    }
    const exit = await s.exit(40_000);
    expect(exit.code).to.equal(1);
    expect(s.logged('The worker died (signal SIGKILL); restarting it').length).to.equal(5);
    expect(s.errorOutput).to.include('The worker died (signal SIGKILL) after 5 restarts within 60 s; giving up: stopping everything.');
    expect(s.logged('shutting down', 'gateway'), 'the gateway was stopped gracefully').to.have.length(1);
    await waitUntil(() => !s.groupAlive(), 5_000, 'every process of the group to be gone');
    await waitUntil(async () => !(await fetch(`http://127.0.0.1:${port}/healthz`).then(() => true, () => false)), 5_000, 'the gateway to be gone');
  });

  it('Ctrl-C while a restarted worker is still starting (no signal handler yet: it dies of the SIGINT) ends the session with exit 0', async () => {
    const s = await npmStart();
    await bothStarted(s);
    const first = workerPids()[0]!;
    await readyLogged(first);
    process.kill(first, 'SIGKILL');
    // The restarted worker, seen as a new child of start.ts before it has logged that it started.
    const restarted = await waitUntil(
      () => childrenOf(s.child.pid!).find((pid) => pid !== first && commandOf(pid).includes('apps/worker/')) ?? null,
      20_000,
      'the restarted worker process',
    );
    expect(workerPids(), 'not started yet').to.not.include(restarted);
    s.signalGroup('SIGINT');
    const exit = await s.exit(40_000);
    expect(exit.code, s.errorOutput + s.tail()).to.equal(0);
  });

  it('an app that never started (its port taken) is not restarted: npm start stops with its status', async () => {
    const taken: Server = createServer();
    const s = await npmStart();
    taken.listen(port, '127.0.0.1');
    await once(taken, 'listening');
    try {
      const exit = await s.exit(60_000);
      expect(exit.code).to.equal(1);
      expect(s.logged('The gateway died'), 'no restart of an app that was never ready').to.deep.equal([]);
      await waitUntil(() => !s.groupAlive(), 5_000, 'every process of the group to be gone');
    } finally {
      taken.close();
    }
  });

  it('a worker asked to stop on its own (SIGTERM to it alone) is not restarted: npm start stops everything, exit 0', async () => {
    const s = await npmStart();
    await bothStarted(s);
    await readyLogged(workerPids()[0]!);
    process.kill(workerPids()[0]!, 'SIGTERM');
    const exit = await s.exit(40_000);
    expect(exit.code).to.equal(0);
    expect(s.logged('The worker died')).to.deep.equal([]);
    expect(s.logged('shutting down', 'gateway')).to.have.length(1);
  });

  it('npm start killed outright (SIGKILL, which it cannot handle): the apps see their channel close and stop gracefully, not left running', async () => {
    const s = await npmStart();
    await bothStarted(s);
    const gatewayPid = s.logged('gateway listening', 'gateway')[0]!.pid as number;
    const workerPid = workerPids()[0]!;
    // The npm script's own process (`node --import tsx scripts/start.ts`, no tsx CLI between) is the apps' parent.
    expect([parentOf(workerPid), parentOf(gatewayPid)]).to.deep.equal([s.child.pid, s.child.pid]);
    process.kill(s.child.pid!, 'SIGKILL');
    await waitUntil(() => !alive(gatewayPid) && !alive(workerPid), 40_000, `both apps to exit${s.tail()}`);
    for (const name of ['gateway', 'worker']) {
      const stops = s.logged('the process that started this one is gone', name);
      expect(stops, `${name} says why it stops`).to.have.length(1);
    }
    expect(s.lines.filter((l) => l.cause === 'supervisor gone' && typeof l.msg === 'string' && /shutting down/.test(l.msg))).to.have.length(2);
  });
});

/** /proc/<pid>/stat from its state on. The command name before it, in parentheses, may hold spaces. */
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** A process's children (of its main thread). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** A process's command line, its arguments joined by spaces ('' once it is gone). */
function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/** A process's parent pid. */
function parentOf(pid: number): number {
  return Number(statFields(pid)[1]);
}

/** Whether a process runs: not gone, and not a zombie its new parent (init, once npm start was killed) has yet to reap. */
function alive(pid: number): boolean {
  try {
    return statFields(pid)[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('RestartBudget (npm start\'s restart bound)', () => {
  it('doubles the delay from 250 ms up to 4 s, refuses a sixth restart within 60 s, and allows one again once the window has moved on', () => {
    const budget = new RestartBudget();
    expect([0, 1, 2, 3, 4].map((i) => budget.next(i * 1000))).to.deep.equal([250, 500, 1000, 2000, 4000]);
    expect(budget.next(5_000)).to.equal(null);
    expect(budget.next(59_999)).to.equal(null);
    // The first restart (at 0) has left the window: one more is granted, the delay still that of the fifth within it.
    expect(budget.next(60_000)).to.equal(4000);
    expect(budget.recent).to.equal(5);
    // Long after: a crash is a first one again.
    expect(budget.next(1_000_000)).to.equal(250);
  });
});
