import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { interactiveKeys, webhookQueue, type Batch, type BatchResultLine, type Job } from '@infer/contract';
import { mlpReference } from '../../scripts/build-models.js';
import { maxAbsDiff } from '../helpers/batches.js';
import { flatten } from '../helpers/jobs.js';
import { int32DivModel } from '../helpers/int-graphs.js';
import { tempModelRepo, type TempModelRepo } from '../helpers/model-repo.js';
import { SHIPPED_MODELS, startPlatform, type TestPlatform } from '../helpers/platform.js';
import { OwnRedis, pings } from '../helpers/redis-server.js';
import { cubicModel } from '../helpers/slow-models.js';
import type { Spawned } from '../helpers/spawned.js';
import { elapse, waitUntil } from '../helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';
import { WorkerProcesses } from '../helpers/worker-process.js';
import { eventIdFor } from '@infer/webhooks';

/**
 * A chaos soak of the per-job promises (docs/api.md, docs/architecture.md "When things fail",
 * docs/webhooks.md), run by hand: `npm run soak` (a few minutes; SOAK_LOAD_MS sets the load's length).
 * Not part of `npm test`: its chaos is random, and a documented limit (a chunk with a crashing row whose
 * worker is also killed in its run for another reason can still end `worker_lost`) is noted, not failed. Own redis-server WITH AOF (appendfsync always): architecture.md promises that with
 * AOF "queued jobs and results survive a Redis restart", so every job acknowledged (200/202) must end,
 * exactly once. (Without AOF nothing is promised for what was in Redis.) The gateway runs in this process;
 * two worker processes are kept alive by an "orchestrator" loop that restarts any that exits (SIGKILLed
 * by the chaos, or SIGFPE from the INT32_MIN / -1 poison).
 */

const LOAD_MS = Number(process.env.SOAK_LOAD_MS ?? 40_000);
const CHAOS_EVERY_MS = 6_000;
const CLIENTS = 3;
const WORKERS = 2;
const LOCK_MS = '2000';
const CUBIC_LEN = 384;

type Kind = 'wait' | 'poll' | 'idem' | 'hook' | 'cancelQ' | 'cancelR' | 'poison' | 'idivGood' | 'hookPoison';

interface Tracked {
  id: string;
  kind: Kind;
  n: number;
  features?: number[];
  div?: [number, number];
  hook: boolean;
  filter: string[];
  idemKey?: string;
  body: unknown;
  /** What the cancel answered: 200 (canceled by us), 409, or an error / other status. */
  cancel?: number;
  /** Every status observed, in order, with where. */
  seen: Array<{ status: string; where: string }>;
}

const FINAL = new Set(['succeeded', 'failed', 'canceled']);

describe('chaos soak: per-job promises under worker SIGKILLs, poison SIGFPEs and a Redis restart', function () {
  this.timeout(LOAD_MS + 360_000);

  let repo: TempModelRepo | undefined;
  let redisDir: string | undefined;
  let redis: OwnRedis | undefined;
  let p: TestPlatform | undefined;
  let receiver: WebhookReceiver<{ type: string; timestamp: string; data: Job }> | undefined;
  let workers: WorkerProcesses | undefined;
  let orchestrating = false;
  let orchestrator: Promise<void> | undefined;
  const live = new Set<Spawned>();
  const everyWorker: Spawned[] = [];
  const deaths: Array<{ code: number | null; signal: string | null; byUs: boolean; at: string }> = [];
  const killedByUs = new Set<Spawned>();
  let spawnedCount = 0;

  before(async () => {
    repo = tempModelRepo({
      mlp: { from: path.join(SHIPPED_MODELS, 'mlp') },
      idiv: { onnx: int32DivModel(), config: { max_batch_size: 8, max_delay_ms: 20 } },
      cubic: { onnx: cubicModel(8), config: { max_batch_size: 4, max_delay_ms: 1 } },
    });
    redisDir = mkdtempSync(path.join(os.tmpdir(), 'review-chaos-redis-'));
    redis = await OwnRedis.start(['--appendonly', 'yes', '--appendfsync', 'always', '--dir', redisDir]);
    receiver = await startWebhookReceiver();
    p = await startPlatform({
      models: repo.root,
      worker: false,
      redisUrl: redis.url,
      env: { WEBHOOK_ALLOW_PRIVATE: 'true', WORKER_LOCK_MS: LOCK_MS, RATE_LIMIT_PER_SECOND: '100000', WEBHOOK_RETRY_DELAYS_MS: '200,500,1000,2000,4000' },
    });
    workers = new WorkerProcesses({
      WORKER_LOCK_MS: LOCK_MS,
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_RETRY_DELAYS_MS: '200,500,1000,2000,4000',
    });
  });

  after(async () => {
    orchestrating = false;
    await orchestrator?.catch(() => undefined);
    for (const w of live) w.kill();
    await workers?.stop().catch(() => undefined);
    await receiver?.close().catch(() => undefined);
    if (redis && !(await pings(redis.url))) await redis.start().catch(() => undefined);
    await p?.close().catch(() => undefined);
    await redis?.stop();
    if (redisDir) rmSync(redisDir, { recursive: true, force: true });
    repo?.remove();
  });

  function spawnWorker(): Spawned {
    const { worker } = workers!.start(p!);
    spawnedCount++;
    everyWorker.push(worker);
    live.add(worker);
    void worker.exited.then((e) => {
      live.delete(worker);
      deaths.push({ code: e.code, signal: e.signal, byUs: killedByUs.has(worker), at: new Date().toISOString() });
    });
    return worker;
  }

  /** As an orchestrator: keep WORKERS worker processes running, restarting any that exits. */
  async function orchestrate(): Promise<void> {
    while (orchestrating) {
      while (orchestrating && live.size < WORKERS && spawnedCount < 60) spawnWorker();
      await waitUntil(() => !orchestrating || live.size < WORKERS, 24 * 3600_000, 'a worker to exit');
    }
  }

  const api = (pathname: string, init: RequestInit & { headers?: Record<string, string> } = {}) => p!.api(pathname, init);

  it('keeps every promise', async () => {
    const tracked = new Map<string, Tracked>();
    const violations: string[] = [];
    const notes: string[] = [];
    let refused = 0;
    let n = 0;
    let stop = false;
    const idemPairs: Array<{ key: string; ids: string[]; statuses: number[]; body: unknown }> = [];

    const observe = (t: Tracked, j: Job | undefined, where: string) => {
      if (!j) return;
      if (j.id !== t.id) violations.push(`${where}: job ${t.id} answered as ${j.id}`);
      const last = t.seen.findLast((s) => FINAL.has(s.status));
      if (last && last.status !== j.status) violations.push(`job ${t.id} (${t.kind}) was ${last.status} (${last.where}) then ${j.status} (${where})`);
      t.seen.push({ status: j.status, where });
    };

    const hookUrl = receiver!.url;
    const mlpBody = (features: number[], extra: Record<string, unknown> = {}) => ({ model: 'mlp', version: '2', input: { features }, metadata: { n }, ...extra });
    const divBody = (a: number, b: number, extra: Record<string, unknown> = {}) => ({ model: 'idiv', input: { a: [a], b: [b] }, ...extra });

    async function submit(body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; job?: Job; replayed: boolean }> {
      try {
        const res = await api('/v1/jobs', { method: 'POST', body: JSON.stringify(body), headers });
        const text = await res.text();
        if (res.status === 200 || res.status === 202) return { status: res.status, job: JSON.parse(text) as Job, replayed: res.headers.get('idempotent-replayed') === 'true' };
        return { status: res.status, replayed: false };
      } catch {
        return { status: -1, replayed: false };
      }
    }

    async function getJob(id: string, wait?: number): Promise<Job | undefined> {
      try {
        const res = await api(`/v1/jobs/${id}`, wait ? { headers: { prefer: `wait=${wait}` } } : {});
        if (res.status === 404) {
          const t = tracked.get(id);
          violations.push(`GET ${id} (${t?.kind}) answered 404 ${await res.text()}`);
          return undefined;
        }
        if (res.status !== 200) {
          await res.body?.cancel();
          return undefined;
        }
        return (await res.json()) as Job;
      } catch {
        return undefined;
      }
    }

    async function cancel(t: Tracked): Promise<void> {
      try {
        const res = await api(`/v1/jobs/${t.id}/cancel`, { method: 'POST' });
        const text = await res.text();
        t.cancel = res.status;
        if (res.status === 200) {
          const j = JSON.parse(text) as Job;
          if (j.status !== 'canceled') violations.push(`cancel of ${t.id} answered 200 with status ${j.status}`);
          observe(t, j, 'cancel 200');
        } else if (res.status !== 409) t.cancel = -res.status;
      } catch {
        t.cancel = -1;
      }
    }

    const client = async (c: number): Promise<void> => {
      while (!stop) {
        const i = n++;
        const features = Array.from({ length: 64 }, (_, k) => Math.fround(Math.sin(i * 0.37 + k)));
        const pick = i % 16;
        let kind: Kind;
        if (pick === 0 || pick === 9) kind = 'idem';
        else if (pick === 1 || pick === 5 || pick === 12) kind = 'hook';
        else if (pick === 2 || pick === 10) kind = 'wait';
        else if (pick === 3) kind = 'cancelQ';
        else if (pick === 4 || pick === 13) kind = 'cancelR';
        else if (pick === 6 && i % 48 === 6) kind = 'poison';
        else if (pick === 6 && i % 48 === 22) kind = 'hookPoison';
        else if (pick === 7) kind = 'idivGood';
        else kind = 'poll';
        const hook = kind === 'hook' || kind === 'hookPoison' || (kind === 'cancelR' && i % 2 === 0) || (kind === 'cancelQ' && i % 2 === 0);
        const filter = ['start', 'completed'];
        const hookExtra = hook ? { webhook: hookUrl, webhook_events_filter: filter } : {};
        let body: unknown;
        let div: [number, number] | undefined;
        if (kind === 'poison' || kind === 'hookPoison') {
          div = [-2147483648, -1];
          body = divBody(div[0], div[1], hookExtra);
        } else if (kind === 'idivGood') {
          div = [1000 + i, (i % 7) + 1];
          body = divBody(div[0], div[1], hookExtra);
        } else if (kind === 'cancelR') {
          body = { model: 'cubic', input: { x: new Array(CUBIC_LEN).fill(0) }, ...hookExtra };
        } else body = mlpBody(features, hookExtra);

        const make = (job: Job): Tracked => {
          const t: Tracked = { id: job.id, kind, n: i, features, hook, filter: hook ? filter : [], body, seen: [] };
          if (div) t.div = div;
          tracked.set(job.id, t);
          return t;
        };

        if (kind === 'idem') {
          const key = `chaos-${c}-${i}-${Math.random().toString(36).slice(2)}`;
          const headers = { 'idempotency-key': key };
          const pair = { key, ids: [] as string[], statuses: [] as number[], body };
          // Half sent back to back, half concurrently (the second waits for the first's enqueue).
          const answers = i % 2 === 0 ? await Promise.all([submit(body, headers), submit(body, headers)]) : [await submit(body, headers), await submit(body, headers)];
          for (const a of answers) {
            pair.statuses.push(a.status);
            if (a.job) pair.ids.push(a.job.id);
          }
          idemPairs.push(pair);
          const first = answers.find((a) => a.job)?.job;
          if (first) {
            const t = tracked.get(first.id) ?? make(first);
            t.idemKey = key;
            for (const a of answers) if (a.job && a.job.id === first.id) observe(t, a.job, `idem POST ${a.status}`);
          } else refused++;
          continue;
        }

        const headers: Record<string, string> = kind === 'wait' ? { prefer: 'wait=5' } : {};
        const a = await submit(body, headers);
        if (!a.job) {
          refused++;
          await elapse(100, 'a client backing off after a refusal');
          continue;
        }
        const t = make(a.job);
        observe(t, a.job, `POST ${a.status}`);
        if (kind === 'wait' && a.status === 200 && !FINAL.has(a.job.status)) violations.push(`POST wait answered 200 with ${a.job.status}`);
        if (kind === 'cancelQ') await cancel(t);
        else if (kind === 'cancelR') {
          // Cancel once it is seen running (bounded), else whatever it is.
          const deadline = Date.now() + 3000;
          for (;;) {
            const j = await getJob(t.id);
            observe(t, j, 'GET before cancel');
            if (!j || j.status === 'running' || FINAL.has(j.status) || Date.now() > deadline) break;
            await elapse(20, 'polling for running before cancel');
          }
          await cancel(t);
        } else {
          await elapse(kind === 'wait' ? 0 : 30, 'the pacing of the load');
        }
      }
    };

    /** Bulk: a JSON batch of mlp rows with a webhook, an idiv batch with one poison row, and one canceled mid-run. */
    const batches: Array<{ id: string; rows: number; kind: 'mlp' | 'idiv' | 'canceled'; features?: number[][]; div?: Array<[number, number]>; cancel?: number }> = [];
    async function postBatch(json: unknown): Promise<Batch | undefined> {
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        try {
          const res = await api('/v1/batches', { method: 'POST', body: JSON.stringify(json) });
          if (res.status === 202) return (await res.json()) as Batch;
          await res.body?.cancel();
        } catch {
          /* retry */
        }
        await elapse(300, 'a client backing off after a refused batch');
      }
      return undefined;
    }
    const bulk = async (): Promise<void> => {
      await elapse(2000, 'batches start a little into the load');
      const feats = Array.from({ length: 80 }, (_, r) => Array.from({ length: 64 }, (_, k) => Math.fround(Math.cos(r * 0.11 + k))));
      const b1 = await postBatch({ model: 'mlp', version: '2', items: feats.map((f, r) => ({ custom_id: `m${r}`, input: { features: f } })), webhook: hookUrl });
      if (b1) batches.push({ id: b1.id, rows: feats.length, kind: 'mlp', features: feats });
      // Three rows, as test/worker-crash-on-input.test.ts: ONNX Runtime divides a longer run with vector code that does not trap.
      const div: Array<[number, number]> = [[100, 2], [-2147483648, -1], [103, 5]];
      const b2 = await postBatch({ model: 'idiv', items: div.map(([a, b], r) => ({ custom_id: `d${r}`, input: { a: [a], b: [b] } })) });
      if (b2) batches.push({ id: b2.id, rows: div.length, kind: 'idiv', div });
      await elapse(8000, 'the next batch comes later in the load');
      const f3 = Array.from({ length: 30 }, () => 0);
      const b3 = await postBatch({ model: 'cubic', items: f3.map(() => ({ input: { x: new Array(CUBIC_LEN).fill(0) } })), webhook: hookUrl });
      if (b3) {
        const entry: (typeof batches)[number] = { id: b3.id, rows: f3.length, kind: 'canceled' };
        batches.push(entry);
        await waitUntil(async () => {
          const b = (await (await api(`/v1/batches/${b3.id}`).catch(() => undefined))?.json().catch(() => undefined)) as Batch | undefined;
          return !b || b.status !== 'queued';
        }, 10_000, 'batch 3 to start').catch(() => undefined);
        const res = await api(`/v1/batches/${b3.id}/cancel`, { method: 'POST' }).catch(() => undefined);
        entry.cancel = res?.status ?? -1;
        await res?.body?.cancel();
      }
    };

    const chaosLog: string[] = [];
    const chaos = async (): Promise<void> => {
      const start = Date.now();
      let step = 0;
      while (Date.now() - start < LOAD_MS - 4000) {
        await elapse(CHAOS_EVERY_MS, 'the chaos schedule');
        step++;
        if (step === 3) {
          chaosLog.push(`t=${Date.now() - start} (${new Date().toISOString()}) redis SIGKILL`);
          await redis!.stop();
          await elapse(1500, 'Redis stays down a while');
          await redis!.start();
          chaosLog.push(`t=${Date.now() - start} redis back`);
        } else {
          const victims = step === 5 ? [...live] : [...live].slice(0, 1);
          for (const v of victims) {
            killedByUs.add(v);
            v.signalGroup('SIGKILL');
          }
          chaosLog.push(`t=${Date.now() - start} SIGKILL ${victims.length} worker(s)`);
        }
      }
      stop = true;
    };

    orchestrating = true;
    orchestrator = orchestrate();
    await waitUntil(async () => {
      await p!.gateway.catalog.refresh();
      const m = (await (await api('/v1/models/mlp')).json()) as { versions_detail?: Array<{ version: string; workers_ready: number }> };
      return (m.versions_detail?.find((v) => v.version === '2')?.workers_ready ?? 0) >= 1;
    }, 60_000, 'a worker to be ready');

    const loadStart = Date.now();
    await Promise.all([chaos(), bulk(), ...Array.from({ length: CLIENTS }, (_, c) => client(c))]);
    const loadEnd = Date.now();

    // ---- Every accepted job ends, with one final status. ----
    const finals = new Map<string, Job>();
    await waitUntil(
      async () => {
        for (const [id, t] of tracked) {
          if (finals.has(id)) continue;
          const j = await getJob(id);
          observe(t, j, 'GET final poll');
          if (j && FINAL.has(j.status)) finals.set(id, j);
        }
        return finals.size === tracked.size;
      },
      150_000,
      'every accepted job to end',
    ).catch((e) => violations.push(`${tracked.size - finals.size} accepted jobs never ended: ${(e as Error).message}; e.g. ${[...tracked.values()].filter((t) => !finals.has(t.id)).slice(0, 5).map((t) => `${t.id} ${t.kind} seen ${t.seen.map((s) => s.status).join('>')}`).join('; ')}`));
    orchestrating = false;
    notes.push(`all jobs ended ${Date.now() - loadEnd} ms after the load`);

    // ---- Batches end and add up. ----
    for (const b of batches) {
      const ended = await waitUntil(async () => {
        const res = await api(`/v1/batches/${b.id}`).catch(() => undefined);
        if (!res || res.status !== 200) return null;
        const batch = (await res.json()) as Batch;
        return batch.status === 'completed' || batch.status === 'canceled' ? batch : null;
      }, 120_000, `batch ${b.id}`).catch(() => undefined);
      if (!ended) {
        violations.push(`batch ${b.id} (${b.kind}) never ended`);
        continue;
      }
      const c = ended.request_counts;
      if (c.total !== b.rows || c.succeeded + c.failed + c.canceled !== c.total) violations.push(`batch ${b.id} (${b.kind}) counts do not add up: ${JSON.stringify(c)} for ${b.rows} rows`);
      const res = await api(`/v1/batches/${b.id}/results`);
      const lines = (await res.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l) as BatchResultLine);
      if (lines.length !== b.rows || lines.some((l, i) => l.index !== i)) violations.push(`batch ${b.id} (${b.kind}) results: ${lines.length} lines for ${b.rows} rows`);
      const by = (s: string) => lines.filter((l) => l.status === s).length;
      if (by('succeeded') !== c.succeeded || by('failed') !== c.failed || by('canceled') !== c.canceled)
        violations.push(`batch ${b.id} (${b.kind}) lines ${by('succeeded')}/${by('failed')}/${by('canceled')} vs counts ${JSON.stringify(c)}`);
      if (b.kind === 'mlp') {
        if (ended.status !== 'completed' || c.succeeded !== b.rows) violations.push(`mlp batch ${b.id}: ${ended.status} ${JSON.stringify(c)}; errors ${[...new Set(lines.map((l) => l.error?.code).filter(Boolean))].join(',')}`);
        for (const l of lines) {
          if (l.status !== 'succeeded') continue;
          const got = flatten((l.output as Record<string, unknown>).probabilities).map(Number);
          if (maxAbsDiff(got, mlpReference(2, Float32Array.from(b.features![l.index]!))) > 1e-5) violations.push(`mlp batch row ${l.index} wrong output`);
        }
      } else if (b.kind === 'idiv') {
        for (const l of lines) {
          const [a, d] = b.div![l.index]!;
          if (a === -2147483648) {
            if (l.status !== 'failed' || !['inference_failed', 'worker_lost'].includes(l.error?.code ?? '')) violations.push(`idiv batch poison row: ${l.status} ${JSON.stringify(l.error)}`);
            else notes.push(`idiv batch poison row ${l.error?.code}`);
          } else if (l.status === 'failed' && l.error?.code === 'worker_lost') {
            // The documented limit: its chunk's crashing row costs two stalls of its own; a chaos kill in its run a third.
            notes.push(`idiv batch row ${l.index} worker_lost (its chunk holds a crashing row, and the chaos killed workers)`);
          } else if (l.status !== 'succeeded' || JSON.stringify(l.output) !== JSON.stringify({ y: [Math.trunc(a / d)] })) violations.push(`idiv batch row ${l.index}: ${l.status} ${JSON.stringify(l.output ?? l.error)}`);
        }
      } else {
        if (b.cancel === 200 && ended.status !== 'canceled') violations.push(`canceled batch ${b.id} ended ${ended.status}`);
        notes.push(`canceled batch: cancel ${b.cancel}, ${ended.status} ${JSON.stringify(c)}`);
      }
    }

    // ---- Final states against expectations. ----
    const counts: Record<string, number> = {};
    for (const [id, t] of tracked) {
      const j = finals.get(id);
      if (!j) continue;
      const k = `${t.kind}:${j.status}${j.error ? '/' + j.error.code : ''}`;
      counts[k] = (counts[k] ?? 0) + 1;
      const canceledByUs = t.cancel === 200;
      if (canceledByUs) {
        if (j.status !== 'canceled' || j.error?.code !== 'canceled') violations.push(`job ${id} canceled by us (200) ends ${j.status} ${JSON.stringify(j.error)}`);
        continue;
      }
      if (t.kind === 'poison' || t.kind === 'hookPoison') {
        if (j.status === 'succeeded' && JSON.stringify(j.output) === JSON.stringify({ y: [-2147483648] })) {
          notes.push(`poison job ${id} ran in a multi-instance run that did not trap (ONNX Runtime's vector code): succeeded with INT32_MIN, batch_size ${j.metrics?.batch_size}`);
          continue;
        }
        if (j.status !== 'failed' || !['inference_failed', 'worker_lost'].includes(j.error?.code ?? '')) violations.push(`poison job ${id} ends ${j.status} ${JSON.stringify(j.error ?? j.output)}`);
        continue;
      }
      if (t.cancel === 409 && j.status === 'canceled') violations.push(`job ${id}: cancel answered 409 yet it ends canceled`);
      if (j.status !== 'succeeded') {
        violations.push(`good job ${id} (${t.kind}) ends ${j.status} ${JSON.stringify(j.error)}`);
        continue;
      }
      if (t.kind === 'cancelR') continue; // cubic: zeros
      if (t.div) {
        if (JSON.stringify(j.output) !== JSON.stringify({ y: [Math.trunc(t.div[0] / t.div[1])] })) violations.push(`idiv job ${id} wrong output ${JSON.stringify(j.output)}`);
      } else {
        const got = flatten((j.output as Record<string, unknown>).probabilities).map(Number);
        if (maxAbsDiff(got, mlpReference(2, Float32Array.from(t.features!))) > 1e-5) violations.push(`mlp job ${id} wrong output`);
      }
    }

    // ---- Idempotency: both answers name one job; a replay now names it too, ended. ----
    for (const pair of idemPairs) {
      if (new Set(pair.ids).size > 1) violations.push(`Idempotency-Key ${pair.key} gave two jobs ${pair.ids.join(' ')} (statuses ${pair.statuses.join(',')})`);
      if (pair.ids.length === 0) continue;
      const res = await api('/v1/jobs', { method: 'POST', body: JSON.stringify(pair.body), headers: { 'idempotency-key': pair.key } });
      const text = await res.text();
      if (res.status !== 200 || res.headers.get('idempotent-replayed') !== 'true') violations.push(`late replay of ${pair.key}: ${res.status} replayed=${res.headers.get('idempotent-replayed')} ${text.slice(0, 200)}`);
      else {
        const j = JSON.parse(text) as Job;
        if (j.id !== pair.ids[0]) violations.push(`late replay of ${pair.key} names ${j.id}, first was ${pair.ids[0]}`);
        const t = tracked.get(pair.ids[0]!);
        if (t) observe(t, j, 'late idem replay');
      }
      if (pair.statuses.some((s) => s !== 200 && s !== 202)) notes.push(`idem pair statuses ${pair.statuses.join(',')}`);
    }

    // ---- Webhooks: one job.completed id per job, its body the final Job; job.started at most one id. ----
    const hooked = [...tracked.values()].filter((t) => t.hook && finals.has(t.id));
    const eventsOf = (id: string, type: string) => receiver!.deliveries.filter((d) => d.event.type === type && d.event.data.id === id);
    await waitUntil(() => hooked.every((t) => eventsOf(t.id, 'job.completed').length > 0), 90_000, 'a job.completed for every webhook job').catch(() =>
      violations.push(`no job.completed for ${hooked.filter((t) => eventsOf(t.id, 'job.completed').length === 0).map((t) => `${t.id}(${t.kind},${finals.get(t.id)?.status})`).join(' ')}`),
    );
    let dupDeliveries = 0;
    for (const t of hooked) {
      const j = finals.get(t.id)!;
      const completed = eventsOf(t.id, 'job.completed');
      const ids = new Set(completed.map((d) => String(d.headers['webhook-id'])));
      if (ids.size > 1) violations.push(`job ${t.id}: ${ids.size} distinct job.completed webhook-ids`);
      dupDeliveries += Math.max(0, completed.length - 1);
      for (const d of completed) {
        if (JSON.stringify(d.event.data) !== JSON.stringify(j))
          violations.push(`job ${t.id} (${t.kind}): job.completed body differs from GET: ${JSON.stringify(d.event.data).slice(0, 300)} vs ${JSON.stringify(j).slice(0, 300)}`);
      }
      const started = eventsOf(t.id, 'job.started');
      const sids = new Set(started.map((d) => String(d.headers['webhook-id'])));
      if (sids.size > 1) violations.push(`job ${t.id}: ${sids.size} distinct job.started webhook-ids`);
      for (const d of started) if (d.event.data.status !== 'running') violations.push(`job ${t.id}: job.started says ${d.event.data.status}`);
      if (j.status === 'succeeded' && t.cancel === undefined && sids.size === 0) {
        // It ran: docs/webhooks.md, "the worker that takes the job over creates any it had not".
        await waitUntil(() => eventsOf(t.id, 'job.started').length > 0, 20_000, 'job.started').catch(async () => {
          const logRes = await api(`/v1/jobs/${t.id}/webhook_deliveries`);
          const byId = await api(`/v1/webhook_deliveries/${eventIdFor('job.started', t.id)}`);
          const ev = byId.status === 200 ? ((await byId.json()) as { state: string; attempt_count: number; next_attempt_at: string | null }) : undefined;
          const resend = await api(`/v1/webhook_deliveries/${eventIdFor('job.started', t.id)}/resend`, { method: 'POST' });
          const byIdText = `${byId.status} state=${ev?.state} attempts=${ev?.attempt_count} next_attempt_at=${ev?.next_attempt_at}; resend answers ${resend.status} ${(await resend.text()).slice(0, 120)}`;
          violations.push(
            `job ${t.id} (${t.kind}) succeeded with filter start but no job.started arrived; created ${j.created_at} started ${j.started_at} completed ${j.completed_at} (load began ${new Date(loadStart).toISOString()}); seen ${t.seen.map((s) => s.status).join('>')}; log ${JSON.stringify(((await logRes.json()) as { data: Array<{ event_type: string; state: string }> }).data.map((d) => [d.event_type, d.state]))}; GET its job.started event by id: ${byIdText}; worker deaths near: ${deaths.filter((d) => Math.abs(Date.parse(d.at) - Date.parse(j.completed_at!)) < 1000).map((d) => d.at.slice(11) + ' ' + d.signal).join(',')}`,
          );
        });
      }
      // The delivery log of the job agrees.
      const res = await api(`/v1/jobs/${t.id}/webhook_deliveries`);
      const log = (await res.json()) as { data: Array<{ event_type: string; state: string; id: string }> };
      const logCompleted = log.data.filter((d) => d.event_type === 'job.completed');
      if (logCompleted.length !== 1) violations.push(`job ${t.id}: ${logCompleted.length} job.completed in its delivery log`);
      if (log.data.filter((d) => d.event_type === 'job.started').length > 1) violations.push(`job ${t.id}: >1 job.started in its delivery log`);
    }
    // The batches with a webhook get one batch.completed each.
    for (const b of batches.filter((x) => x.kind !== 'idiv')) {
      await waitUntil(() => receiver!.deliveries.some((d) => d.event.type === 'batch.completed' && (d.event.data as unknown as Batch).id === b.id), 60_000, 'batch.completed').catch(() =>
        violations.push(`batch ${b.id} (${b.kind}) got no batch.completed`),
      );
      const ids = new Set(receiver!.deliveries.filter((d) => d.event.type === 'batch.completed' && (d.event.data as unknown as Batch).id === b.id).map((d) => String(d.headers['webhook-id'])));
      if (ids.size > 1) violations.push(`batch ${b.id}: ${ids.size} batch.completed ids`);
    }

    // ---- Redis: the queued counts back to 0, nothing indexed, waiting, active or owed. ----
    const r = new Redis(redis!.url, { maxRetriesPerRequest: 3 });
    const queue = new Queue(webhookQueue(p!.prefix).name, { connection: r, prefix: webhookQueue(p!.prefix).prefix });
    try {
      const snapshot = async () => {
        const out: Record<string, unknown> = {};
        for (const [m, v] of [['mlp', '2'], ['idiv', '1'], ['cubic', '1']] as const) {
          const k = interactiveKeys(p!.prefix, m, v);
          out[`${m}.queued`] = Number((await r.get(k.queued)) ?? 0);
          out[`${m}.index`] = await r.hlen(k.index);
          out[`${m}.wait`] = await r.llen(k.wait);
          out[`${m}.active`] = await r.llen(k.active);
          out[`${m}.outbox`] = await r.llen(k.outbox);
          out[`${m}.deadlines`] = await r.zcard(k.deadlines);
        }
        const w = await queue.getJobCounts('waiting', 'delayed', 'active', 'prioritized');
        for (const [k, v] of Object.entries(w)) out[`webhooks.${k}`] = v;
        return out;
      };
      let last: Record<string, unknown> = {};
      await waitUntil(async () => {
        last = await snapshot();
        return Object.values(last).every((v) => v === 0);
      }, 45_000, 'Redis to settle').catch(() => violations.push(`Redis did not settle: ${JSON.stringify(last)}`));
      notes.push(`redis at the end: ${JSON.stringify(last)}`);
    } finally {
      await queue.close();
      r.disconnect();
    }

    // ---- Canceled jobs stay canceled, ended jobs stay as they were: read every job once more. ----
    for (const [id, t] of tracked) {
      const j = await getJob(id);
      observe(t, j, 'GET at the very end');
      const f = finals.get(id);
      if (j && f && JSON.stringify(j) !== JSON.stringify(f)) violations.push(`job ${id} changed after it ended: ${JSON.stringify(f).slice(0, 200)} → ${JSON.stringify(j).slice(0, 200)}`);
    }

    console.log(
      `      soak: ${tracked.size} jobs accepted, ${refused} refused; ${batches.length} batches; ${spawnedCount} worker processes started, deaths ${JSON.stringify(
        deaths.reduce<Record<string, number>>((acc, d) => ((acc[`${d.signal ?? d.code}${d.byUs ? '(us)' : ''}`] = (acc[`${d.signal ?? d.code}${d.byUs ? '(us)' : ''}`] ?? 0) + 1), acc), {}),
      )}; ${receiver!.deliveries.length} webhook deliveries (${dupDeliveries} repeated job.completed)\n      chaos: ${chaosLog.join('; ')}\n      outcomes: ${JSON.stringify(counts)}\n      notes: ${notes.join('\n        ')}`,
    );
    const warned = new Map<string, number>();
    for (const w of everyWorker) for (const l of w.lines) if (Number(l.level) >= 40) warned.set(String(l.msg), (warned.get(String(l.msg)) ?? 0) + 1);
    console.log(`      worker warnings/errors: ${JSON.stringify([...warned])}`);
    console.log(`      deaths: ${deaths.map((d) => `${d.at.slice(11)} ${d.signal}${d.byUs ? '(us)' : ''}`).join(', ')}`);
    if (violations.length) console.log(`      VIOLATIONS (${violations.length}):\n        ${violations.slice(0, 80).join('\n        ')}`);
    expect(tracked.size).to.be.greaterThan(100);
    expect(violations).to.deep.equal([]);
  });
});
