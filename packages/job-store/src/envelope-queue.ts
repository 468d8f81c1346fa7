import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { DEPTH_ALLOWANCE_FIELD, JOB_CATALOG, QUEUE_EVENTS_MAX_LEN, allowanceInstances, allowanceValue, interactiveKeys, keys, parseQueueMember, type EnvelopeData, platformNow } from '@infer/contract';
import { withJobScripts, type Arg, type ScriptPipeline, type ScriptRedis } from './redis-scripts.js';
import { MARK_CHUNK_RUN, MARK_RUN_BEGAN, MARK_RUNNING } from './scripts.js';

export interface EnvelopeQueueOptions {
  prefix: string;
  model: string;
  version: string;
  /** How long an ended job's record stays readable. */
  resultTtlMs: number;
}

/**
 * Bring a queue's queued counts back to 0 when nothing waits in it
 * (RECONCILE_QUEUED): envelopes removed by hand leave them up, holding the
 * limits against jobs that are gone. Returns the instances let go.
 */
export function reconcileQueuedCounts(redis: Redis, prefix: string, model: string, version: string): Promise<number> {
  const k = interactiveKeys(prefix, model, version);
  return withJobScripts(redis).inferReconcileQueued(k.wait, k.queued, k.tenants);
}

/**
 * Every interactive queue in the registry the gateways keep (one member per
 * queue any gateway wrote to), as model versions; members that are not a
 * `[model, version]` pair are skipped.
 */
export async function registeredQueues(redis: Redis, prefix: string): Promise<Array<{ name: string; version: string }>> {
  const members = await redis.smembers(keys(prefix).interactiveQueues);
  return members.map(parseQueueMember).filter((v): v is { name: string; version: string } => v !== undefined);
}

/** What OLDEST_WAITING found in a queue's `wait`, looking past envelopes whose jobs were all canceled. */
export interface OldestWaiting {
  /** When the oldest envelope with a job still waiting was written (epoch ms); null when none of those looked at has one. */
  at: number | null;
  /**
   * When `at` is null because every envelope looked at was canceled, and more
   * were left unlooked at: the last one's time. A waiting envelope, if there
   * is one, is at least that old; whether there is one, the count says.
   */
  atLeast: number | null;
}

/** The oldest envelope still waiting in a queue (OLDEST_WAITING). */
export async function oldestWaiting(redis: Redis, prefix: string, model: string, version: string): Promise<OldestWaiting> {
  const k = interactiveKeys(prefix, model, version);
  const [at, atLeast] = await withJobScripts(redis).inferOldestWaiting(k.wait, k.base, OLDEST_WAITING_LOOKS);
  return { at: Number(at) || null, atLeast: Number(atLeast) || null };
}

/**
 * When the oldest job still queued was written (epoch ms), or null: `at`,
 * or, past a run of canceled envelopes longer than the script looks, the
 * last one's time while the queue's count says jobs are queued. `at` is not
 * gated on the count: an envelope the stalled check put back (its worker
 * died) waits again, though its jobs left the count at their first take.
 */
export function oldestQueuedAt(oldest: OldestWaiting, queued: number): number | null {
  return oldest.at ?? (queued > 0 ? oldest.atLeast : null);
}

/** A version's interactive queue as a held rollout step judges it (advanceRollouts' ReadCandidateQueue). */
export async function candidateQueue(redis: Redis, prefix: string, model: string, version: string): Promise<{ oldestWaitingAt: number | null; running: number }> {
  const [oldest, queued, running] = await Promise.all([
    oldestWaiting(redis, prefix, model, version),
    redis.get(interactiveKeys(prefix, model, version).queued),
    runningEnvelopes(redis, prefix, model, version),
  ]);
  return { oldestWaitingAt: oldestQueuedAt(oldest, Math.max(0, Number(queued ?? 0))), running };
}

/**
 * How many of a queue's taken envelopes a live worker still holds (their
 * lock not lapsed), looking at the first 100: a version whose jobs wait
 * behind a run in progress is serving, slowly; one whose taken envelopes'
 * locks all lapsed is not.
 */
export async function runningEnvelopes(redis: Redis, prefix: string, model: string, version: string): Promise<number> {
  const k = interactiveKeys(prefix, model, version);
  const ids = await redis.lrange(k.active, 0, 99);
  const real = ids.filter((id) => !id.startsWith('0:'));
  return real.length === 0 ? 0 : redis.exists(...real.map((id) => `${k.base}${id}:lock`));
}

/** Envelopes of canceled jobs OLDEST_WAITING looks past, at most, before it settles for the last one's age. */
const OLDEST_WAITING_LOOKS = 64;

/** An envelope as the gateway writes it. */
export interface NewEnvelope {
  id: string;
  data: EnvelopeData;
  /** Every job's inputs, input by input (all instances of the first input, then of the second…). */
  inputs: Buffer;
  /** Instances in it (its jobs). */
  instances: number;
  /** MAX_QUEUE_DEPTH (the queue's allowance of it is checked), or 0 for none. */
  limit: number;
  /** TENANT_MAX_QUEUED (each tenant's allowance of it here is checked); absent: tenants are not counted. */
  tenantCap?: number;
  now: number;
}

/** One of the limits a queue holds an allowance of: MAX_QUEUE_DEPTH, or one tenant's TENANT_MAX_QUEUED. */
export type LimitOf = { kind: 'depth'; limit: number } | { kind: 'tenant'; cap: number; tenant: string };

export type EnqueueOutcome =
  /** `queued`: the queue's count now. */
  | { accepted: true; queued: number }
  /** Past the queue's allowance of MAX_QUEUE_DEPTH: `queued` is the queue's count, `allowed` its allowance; nothing was written. */
  | { accepted: false; over: 'depth'; queued: number; allowed: number }
  /** A tenant past its allowance of TENANT_MAX_QUEUED here: its count and allowance in this queue; nothing was written. */
  | { accepted: false; over: 'tenant'; tenant: string; queued: number; allowed: number }
  /** The queue is closed: its version is draining, and its workers unload it once the queue is empty. */
  | { accepted: false; over: 'closed' }
  /** The inputs key written just before was gone (evicted: a queue's Redis needs `noeviction`); nothing was written. */
  | { accepted: false; over: 'inputs_lost' };

/** An envelope as a worker takes it: its job hash's fields, before the take. */
export interface TakenEnvelope {
  id: string;
  /** Its hash as it was before this take (after it, for one found again when the take's reply was lost: see recover). */
  fields: Map<string, Buffer>;
  /**
   * When a worker first took it (epoch ms), as the take recorded it: this
   * take, or for an envelope put back after its worker stalled, the first
   * one. Until then its jobs were queued; from then on they had started.
   */
  firstTakenAt: number;
  /**
   * When this take took it (epoch ms), as the take stamped it (`processedOn`,
   * what a read of its running jobs answers as `started_at`): not when the
   * reply reached the worker, which a model run holding its event loop can
   * delay by the rest of that run.
   */
  takenAt: number;
  /** Which take of it this is (1 for the first): what its run-began note (`rt`) names. */
  take: number;
  /** Stalls of its own runs so far, this one's included (see FETCH): more than none, and its jobs run one at a time. */
  ownStalls: number;
  /** Whether the take noted that a run of it begins in this take (FETCH's `runsNext`); if not, the worker notes it before the run. */
  runBegan: boolean;
}

/** How a take is sent. */
export interface TakeOptions {
  /**
   * The envelopes it brings are the next to run in this worker: nothing the
   * worker holds runs before them, and no run starts until they are in hand.
   * The take then notes their run as begun (FETCH); otherwise the worker
   * does, just before it (markRunsBegun). A worker that dies counts a stall
   * of their own only to envelopes so noted.
   * @default true
   */
  runsNext?: boolean;
  /**
   * With `runsNext`: nothing is collecting, so the take's first envelope
   * starts the next batch however many jobs it holds; otherwise only those
   * the room left (`wanted`) holds join it.
   * @default true
   */
  startsBatch?: boolean;
}

/** What a worker hands back for one envelope: every job of it, in order. */
export interface FinishingEnvelope {
  id: string;
  /** The submitting gateway's channel (the envelope's `data.gateway`). */
  gateway: string;
  jobs: ReadonlyArray<{
    id: string;
    record: Buffer | null;
    wait: boolean;
    deadline?: boolean;
    completedHook?: boolean;
    /** Its job.started is wanted and not known to be made: the outbox makes it (CompletedEventsOutbox). */
    startedOwed?: boolean;
  }>;
}

/**
 * Envelopes with at least this many bytes of inputs keep them in a key of
 * their own (`<envelope key>:in`), written and read by plain SET and MGET
 * instead of through the scripts: a string entering or leaving a Lua
 * script is hashed whole by Redis's Lua, ~1.7 ms of Redis's one thread for
 * an envelope of six 110 KB images each way (a plain SET of it: 40 µs).
 * Below this the inputs ride in the envelope's hash, in the scripts' one
 * round trip: a key of their own costs two commands and a round trip more.
 */
export const EXTERNAL_INPUT_BYTES = 16 * 1024;
/**
 * The expiry of an inputs key until ENQUEUE takes it in (and PERSISTs it):
 * only the moment between two commands sent back to back on one
 * connection, unless the gateway dies in it; then the key goes by itself.
 */
const UNCLAIMED_INPUTS_MS = 60_000;

/**
 * One model version's interactive queue, through the platform's own scripts
 * (scripts.ts): the gateway enqueues envelopes, workers take and finish
 * them. Each call is one round trip, whatever the number of jobs in it.
 */
export class EnvelopeQueue {
  readonly keys: ReturnType<typeof interactiveKeys>;
  private readonly redis: ScriptRedis;

  constructor(
    redis: Redis,
    private readonly options: EnvelopeQueueOptions,
  ) {
    this.redis = withJobScripts(redis);
    this.keys = interactiveKeys(options.prefix, options.model, options.version);
  }

  /** Write an envelope, its jobs' index entries and deadlines, and count it, if it fits under the limits. */
  async enqueue(e: NewEnvelope): Promise<EnqueueOutcome> {
    const k = this.keys;
    const perTenant = new Map<string, number>();
    if (e.tenantCap) for (const j of e.data.jobs) perTenant.set(j.tenant, (perTenant.get(j.tenant) ?? 0) + 1);
    const tenants = [...perTenant].flatMap(([tenant, n]) => [tenant, n]);
    const deadlines = e.data.jobs.filter((j) => j.deadline !== undefined).flatMap((j) => [j.id, j.deadline!]);
    const external = e.inputs.byteLength >= EXTERNAL_INPUT_BYTES;
    const inputsKey = this.keys.inputs(e.id);
    // Sent ahead of the script on the same connection: Redis runs it first, so ENQUEUE finds it.
    const inputsWritten = external ? this.redis.set(inputsKey, e.inputs, 'PX', UNCLAIMED_INPUTS_MS) : undefined;
    const enqueued = this.redis.inferEnqueue(
      k.wait,
      k.marker,
      k.queued,
      k.index,
      k.base + e.id,
      k.tenants,
      k.deadlines,
      k.meta,
      inputsKey,
      k.allowances,
      e.id,
      `${k.ref.name}:${e.id}`,
      e.instances,
      e.limit > 0 ? e.limit : '',
      e.now,
      JSON.stringify(e.data),
      external ? '' : e.inputs,
      external ? '1' : '',
      e.tenantCap ? e.tenantCap : '',
      perTenant.size,
      ...tenants,
      deadlines.length / 2,
      ...deadlines,
      ...e.data.jobs.map((j) => j.id),
    );
    const [, reply] = await Promise.all([inputsWritten, enqueued]);
    if (reply[0] === -3) return { accepted: false, over: 'inputs_lost' };
    if (reply[0] === 1) return { accepted: true, queued: Number(reply[1]) };
    if (reply[0] === 0) return { accepted: false, over: 'depth', queued: Number(reply[1]), allowed: Number(reply[2]) };
    if (reply[0] === -2) return { accepted: false, over: 'closed' };
    return { accepted: false, over: 'tenant', tenant: String(reply[1]), queued: Number(reply[2]), allowed: Number(reply[3]) };
  }

  /** Where this queue's count and allowance of `of` are: keys and fields. */
  private allowanceKeys(of: LimitOf): { count: string; countField: string; holder: string; field: string; limit: number } {
    const k = this.keys;
    return of.kind === 'depth'
      ? { count: k.queued, countField: '', holder: k.meta, field: DEPTH_ALLOWANCE_FIELD, limit: of.limit }
      : { count: k.tenants, countField: of.tenant, holder: k.allowances, field: of.tenant, limit: of.cap };
  }

  /** This queue's count of what `of` limits, and its allowance of it, whatever limit granted it (see EnvelopeWriter). */
  async allowance(of: LimitOf): Promise<{ own: number; allowed: number }> {
    const a = this.allowanceKeys(of);
    const [own, allowed] = await Promise.all([
      a.countField === '' ? this.redis.get(a.count) : this.redis.hget(a.count, a.countField),
      this.redis.hget(a.holder, a.field),
    ]);
    return { own: Number(own ?? 0), allowed: allowanceInstances(allowed) };
  }

  /** Lower this queue's allowance of `of` by up to `most`, never below its count: what was taken back. */
  reclaim(of: LimitOf, most: number): Promise<number> {
    const a = this.allowanceKeys(of);
    return this.redis.inferReclaimAllowance(a.count, a.holder, a.countField, a.field, most);
  }

  /** Set this queue's allowance of `of`, granted under its limit (only holding the limits lock: allowances change nowhere else). */
  async allow(of: LimitOf, allowed: number): Promise<void> {
    const a = this.allowanceKeys(of);
    await this.redis.hset(a.holder, a.field, allowanceValue(allowed, a.limit));
  }

  /** Jobs whose Cancel-After deadline has passed, oldest first, at most `most`. */
  async due(now: number, most: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.deadlines, '-inf', now, 'LIMIT', 0, most);
  }

  /** Forget a deadline (its job has ended, or is running and will finish). */
  async forgetDeadline(id: string): Promise<void> {
    await this.redis.zrem(this.keys.deadlines, id);
  }

  /**
   * One look at the jobs past their Cancel-After deadline, oldest first, at
   * most `most`: `expire` ends one still queued (true when it has ended); the
   * deadline of one it leaves (running: taken in time; or gone) is
   * forgotten. A worker's sweep and a gateway's (while no worker serves the
   * queue) both go through here. Answers how many ended.
   */
  async sweepDeadlines(now: number, most: number, expire: (id: string) => Promise<boolean>): Promise<number> {
    let ended = 0;
    for (const id of await this.due(now, most)) {
      if (await expire(id)) ended++;
      else await this.forgetDeadline(id);
    }
    return ended;
  }

  /**
   * Write what BullMQ's Queue would write to the queue's meta when it opens
   * it: the event stream's cap (QUEUE_EVENTS_MAX_LEN), which BullMQ's stalled
   * check trims it to.
   */
  async configure(): Promise<void> {
    await this.redis.hset(this.keys.meta, 'opts.maxLenEvents', QUEUE_EVENTS_MAX_LEN);
  }

  /**
   * Take envelopes, oldest first, until `wanted` instances (at most `most`
   * envelopes), locked with `token` for `lockMs`. `waiting` is how many
   * envelopes are left in the queue: 0 means nothing more to wait for.
   */
  async fetch(token: string, lockMs: number, wanted: number, most: number, take: TakeOptions = {}): Promise<FetchOutcome> {
    const now = platformNow();
    const closes = closesOf(this.redis);
    const before = closes.count;
    const outcome = parseFetch(await this.redis.inferFetchBuffer(...this.fetchArgs(token, lockMs, wanted, most, now, false, take)), now);
    return this.withInputs(closes.count === before ? outcome : await this.recover(outcome, token, now), lockMs);
  }

  /**
   * Block on the queue's marker (BullMQ's wake-up signal, set by every
   * enqueue) for up to `timeoutSeconds`, then take as `fetch` does, in one
   * write on `blocking`: Redis runs the take queued behind the blocking read
   * as soon as the read is served. An idle worker so learns of work and
   * takes it in one round trip, not two (at one job at a time, that is two
   * fewer messages between processes per job). The take runs after a
   * timeout too, finding nothing or what came meanwhile. `blocking` must be
   * a connection of its own: a blocked connection serves nothing else.
   */
  async waitAndFetch(blocking: Redis, timeoutSeconds: number, token: string, lockMs: number, wanted: number, most: number, take: TakeOptions = {}): Promise<FetchOutcome> {
    const pipeline = withJobScripts(blocking).pipeline().bzpopmin(this.keys.marker, timeoutSeconds) as ScriptPipeline;
    const now = platformNow();
    const closes = closesOf(blocking);
    const before = closes.count;
    const [, fetched] = (await pipeline.inferFetchBuffer(...this.fetchArgs(token, lockMs, wanted, most, now, true, take)).exec()) ?? [];
    if (!fetched) throw new Error('the blocking take got no reply');
    if (fetched[0]) throw fetched[0];
    const outcome = parseFetch(fetched[1] as unknown[], now);
    if (outcome !== 'paused') await this.restampTakenBack(outcome.envelopes, token);
    return this.withInputs(closes.count === before ? outcome : await this.recover(outcome, token, now), lockMs);
  }

  /**
   * A take behind a blocking read runs when the read is served, and FETCH
   * stamps it with the time the read was sent, or the envelope's enqueue
   * time if later: right for the envelope whose enqueue ended the wait. One
   * the stalled check put back (its worker died) was enqueued long before,
   * and the read may have waited seconds for it: its stamp would name a
   * moment when nothing happened. FETCH answers Redis's clock at the take
   * (`@t`) for it, which is the platform's clock (platformNow): it is stamped
   * again with that moment, only while the take still holds it. A first take
   * is left as it is (its stamp is the first take's, `ft`, which deadlines
   * are judged by).
   */
  private async restampTakenBack(envelopes: TakenEnvelope[], token: string): Promise<void> {
    for (const e of envelopes) {
      if (!e.fields.has('@t')) continue;
      const at = Math.round(Number(e.fields.get('@t')!.toString()));
      e.takenAt = at;
      const jk = this.keys.base + e.id;
      await this.redis.inferRestampTake(jk, `${jk}:lock`, token, at);
    }
  }

  /**
   * A take whose connection closed while it was in flight: Redis may have
   * run it and lost the reply, and the FETCH ioredis sent again found
   * nothing of what the first run took. Those envelopes are this take's
   * (locked with its token): found again in `active`, not left to lapse
   * into a stall, which would count toward their jobs' `worker_lost`.
   */
  private async recover(outcome: FetchOutcome, token: string, now: number): Promise<FetchOutcome> {
    const found = parseFetch(await this.redis.inferRecoverTakeBuffer(this.keys.active, this.keys.base, token), now, true);
    const taken = outcome === 'paused' ? { waiting: 0, envelopes: [] } : outcome;
    if (found === 'paused') return outcome;
    const have = new Set(taken.envelopes.map((e) => e.id));
    const lost = found.envelopes.filter((e) => !have.has(e.id));
    return lost.length === 0 ? outcome : { waiting: taken.waiting, envelopes: [...taken.envelopes, ...lost] };
  }

  /**
   * Taken envelopes whose inputs are in a key of their own get them, as
   * their `in` field, by one MGET for all of them. One whose key is gone
   * is left without: readEnvelope fails its jobs. The envelopes are this
   * worker's already (FETCH locked them), so an error reply (BUSY while a
   * long script runs) is tried again, as FINISH is, before the take is given
   * up: a take given up leaves them to lapse into a stall, and enough
   * stalls fail their jobs `worker_lost`. Only while half their lock is
   * left (nothing renews it before the take returns): past that, another
   * worker could take them back and run them too.
   */
  private async withInputs(outcome: FetchOutcome, lockMs: number): Promise<FetchOutcome> {
    if (outcome === 'paused') return outcome;
    const external = outcome.envelopes.filter((e) => e.fields.has('ix'));
    if (external.length === 0) return outcome;
    const keys = external.map((e) => this.keys.inputs(e.id));
    let bytes: Array<Buffer | null>;
    const giveUpAt = Date.now() + lockMs / 2;
    for (let attempt = 0; ; attempt++) {
      try {
        bytes = await this.redis.mgetBuffer(...keys);
        break;
      } catch (err) {
        const pause = 200 * 2 ** attempt;
        if (attempt >= 3 || Date.now() + pause > giveUpAt) throw err;
        await sleep(pause);
      }
    }
    external.forEach((e, i) => {
      const b = bytes[i];
      if (b) e.fields.set('in', b);
    });
    return outcome;
  }

  private fetchArgs(token: string, lockMs: number, wanted: number, most: number, now: number, blocking: boolean, take: TakeOptions): Arg[] {
    const k = this.keys;
    const runsNext = !(take.runsNext ?? true) ? '0' : (take.startsBatch ?? true) ? '2' : '1';
    return [k.wait, k.active, k.meta, k.marker, k.queued, k.tenants, k.base, token, lockMs, now, wanted, most, blocking ? '1' : '0', runsNext, JOB_CATALOG.envelope.maxStalledCount];
  }

  /**
   * Whether the connection is up: a command sent now is written to Redis's
   * socket at once (the defined commands outside its auto-pipeline), not
   * queued until it reconnects.
   */
  get connected(): boolean {
    return this.redis.status === 'ready';
  }

  /**
   * Record on a taken envelope that its jobs' `job.started` events are made
   * and queued (a take after a stall finds `ws` among its fields and makes
   * none again). Nothing for an envelope already gone.
   */
  async markStartedSent(envelopeId: string): Promise<void> {
    await this.redis.inferMarkStartedSent(this.keys.base + envelopeId);
  }

  /**
   * Note on an envelope taken again after a stall that `jobId` runs now on its own, or with null that
   * nothing does (MARK_RUNNING), while `token`'s take still holds it. False when it does not (ended, or
   * taken back meanwhile).
   */
  async markRunning(envelopeId: string, token: string, jobId: string | null, take: number): Promise<boolean> {
    return noteRunning(this.redis, this.keys.base + envelopeId, token, jobId ?? '', take);
  }

  /**
   * Note on envelopes, each while its take still holds it, that a run of
   * them begins in that take (MARK_ENVELOPE_RUNS), or with `take` null
   * clear that note: another's run starts first. How many were written.
   */
  async markRunsBegun(envelopes: ReadonlyArray<{ id: string; token: string; take: number | null }>): Promise<number> {
    const keys: string[] = [];
    const args: Arg[] = [];
    for (const e of envelopes) {
      const jobKey = this.keys.base + e.id;
      keys.push(jobKey, `${jobKey}:lock`);
      args.push(e.token, e.take ?? '');
    }
    return this.redis.inferMarkEnvelopeRuns(keys.length, ...keys, ...args);
  }

  /** End the jobs of these envelopes and remove them; per job (in order), whether this call ended it. */
  async finish(envelopes: readonly FinishingEnvelope[]): Promise<boolean[]> {
    if (envelopes.length === 0) return [];
    const k = this.keys;
    const args: Array<string | number | Buffer> = [k.active, k.wait, k.index, k.base, `${k.ref.prefix}:job:`, this.options.resultTtlMs];
    for (const e of envelopes) {
      args.push(e.id, e.gateway, e.jobs.length);
      for (const j of e.jobs) args.push(j.id, j.record ?? '', j.wait ? '1' : '', j.deadline ? '1' : '', `${j.completedHook ? '1' : ''}${j.startedOwed ? 's' : ''}`);
    }
    const ended = await this.redis.inferFinish(...args);
    return ended.map((x) => x === 1);
  }

}

/** What a take found: `waiting` envelopes left in the queue (0: nothing more to wait for), or the queue is paused. */
export type FetchOutcome = { waiting: number; envelopes: TakenEnvelope[] } | 'paused';

/** Closes seen on a connection, counted from the first take on it: a command in flight across one may have run and be sent again. */
const connectionCloses = new WeakMap<Redis, { count: number }>();
function closesOf(redis: Redis): { count: number } {
  let closes = connectionCloses.get(redis);
  if (!closes) {
    const counter = { count: 0 };
    redis.on('close', () => counter.count++);
    connectionCloses.set(redis, counter);
    closes = counter;
  }
  return closes;
}

/**
 * A take's reply; `now` is the time the take was sent with (the FETCH
 * script's ARGV[4]); `afterTake`: the fields are from after the take
 * (recover), so they hold its stamp.
 */
function parseFetch(reply: unknown[], now: number, afterTake = false): FetchOutcome {
  const waiting = Number(reply[0]);
  if (waiting < 0) return 'paused';
  const envelopes: TakenEnvelope[] = [];
  for (let i = 1; i + 1 < reply.length; i += 2) {
    const flat = reply[i + 1] as Buffer[];
    const fields = new Map<string, Buffer>();
    for (let f = 0; f + 1 < flat.length; f += 2) fields.set(flat[f]!.toString(), flat[f + 1]!);
    const takenAt = afterTake ? Number(fields.get('processedOn')?.toString()) || now : stampOf(fields, now);
    const field = (name: string) => fields.get(name)?.toString();
    // Fields from before the take, with what FETCH decided (`@own`, `@rt`); from after it, as FETCH left them.
    const take = afterTake ? Number(field('ats')) || 1 : (Number(field('ats')) || 0) + 1;
    const ownStalls = Number(field(afterTake ? 'ors' : '@own')) || 0;
    const runBegan = afterTake ? field('rt') === String(take) : fields.has('@rt');
    envelopes.push({ id: (reply[i] as Buffer).toString(), fields, firstTakenAt: firstTakenAt(fields, now), takenAt, take, ownStalls, runBegan });
  }
  return { waiting, envelopes };
}

/**
 * The first take's time: `ft`, which the first take wrote; for a first take
 * (the fields are from before it), the time FETCH stamps, max(now, enqueue
 * time); for an envelope first taken before `ft` existed, its last take's.
 */
function firstTakenAt(fields: ReadonlyMap<string, Buffer>, now: number): number {
  const stamped = fields.get('ft') ?? fields.get('processedOn');
  if (stamped) return Number(stamped.toString());
  return stampOf(fields, now);
}

/** The time FETCH stamps a take with (processedOn): max(the time the take was sent with, the envelope's enqueue time). */
function stampOf(fields: ReadonlyMap<string, Buffer>, now: number): number {
  return Math.max(now, enqueuedAt(fields));
}

function enqueuedAt(fields: ReadonlyMap<string, Buffer>): number {
  return Number(fields.get('timestamp')?.toString() ?? 0) || 0;
}

/**
 * Note on a BullMQ job (an envelope, a bulk chunk) held under `token` what runs now on its own ("" once
 * it has run): MARK_RUNNING. Sent by EVAL, not as a defined command: it runs only after a stall, and a
 * bulk worker's connection, which BullMQ's pipelines share, is kept without the job scripts. `take`, for
 * an envelope: the take's number, noted with it (`rt`: its run began in that take). True when noted.
 */
export async function noteRunning(redis: Redis, jobKey: string, token: string, value: string, take?: number): Promise<boolean> {
  const args = take === undefined ? [token, value] : [token, value, take];
  return (await redis.eval(MARK_RUNNING, 2, jobKey, `${jobKey}:lock`, ...args)) === 1;
}

/**
 * Mark that a run of a bulk chunk held under `token` begins in its attempt `attempt` (MARK_RUN_BEGAN), and
 * set BullMQ's stall count to the stalls of the chunk's own runs, which it returns (past `maxStalls`, the
 * chunk is marked a deferred failure): stalls while it was only held beside another's run do not count.
 * `not-held` when the take no longer holds it (nothing written).
 */
export async function markRunBegan(redis: Redis, jobKey: string, token: string, attempt: number, maxStalls: number): Promise<number | 'not-held'> {
  const own = Number(await redis.eval(MARK_RUN_BEGAN, 2, jobKey, `${jobKey}:lock`, token, String(attempt), String(maxStalls)));
  return own >= 0 ? own : 'not-held';
}

/**
 * Set (attempt) or clear (null) a bulk chunk's note that its run is under way, while `token`'s take holds
 * it (MARK_CHUNK_RUN). True when written.
 */
export async function markChunkRun(redis: Redis, jobKey: string, token: string, attempt: number | null): Promise<boolean> {
  return (await redis.eval(MARK_CHUNK_RUN, 2, jobKey, `${jobKey}:lock`, token, attempt === null ? '' : String(attempt))) === 1;
}

/** What a job's last holder noted was running on its own when it last held it (MARK_RUNNING), if anything. */
export async function runningNote(redis: Redis, jobKey: string): Promise<string | undefined> {
  return (await redis.hget(jobKey, 'run')) ?? undefined;
}
