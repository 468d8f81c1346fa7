import type { Redis } from 'ioredis';
import { keys, newEnvelopeId, queueMember, type EnvelopeData, type EnvelopeJob, platformNow } from '@infer/contract';
import { AppError } from '@infer/errors';
import { EnvelopeQueue, registeredQueues, type LimitOf, type NewEnvelope } from '@infer/job-store';
import type { ModelVersion } from '@infer/models';
import { tensorBuffers, type DecodedTensor } from '@infer/tensors';
import { LimitsLock } from './limits-lock.js';

export interface EnvelopeWriterOptions {
  /** A command connection. */
  redis: Redis;
  prefix: string;
  resultTtlMs: number;
  /** MAX_QUEUE_DEPTH: queued instances, over every interactive queue. */
  maxQueueDepth: number;
  /** TENANT_MAX_QUEUED: queued instances one tenant may have over every interactive queue; absent, no cap. */
  tenantMaxQueued?: number | undefined;
  /** This gateway's channel, where waiting requests hear of their jobs' ends. */
  gatewayChannel: string;
  /** How long to wait for the limits lock before answering 503 `unavailable`. @default 5000 */
  lockWaitMs?: number;
  /** Told the size of every envelope written, for metrics. */
  onEnvelope?: (model: ModelVersion, instances: number) => void;
}

interface Pending {
  job: EnvelopeJob;
  inputs: readonly DecodedTensor[];
  done: (err?: unknown) => void;
}

/** An envelope's jobs still to write: `jobs` now, `later` those of a capped tenant set aside for the lock. */
interface Left {
  jobs: Pending[];
  later: Pending[];
}

interface Open {
  model: ModelVersion;
  queue: EnvelopeQueue;
  jobs: Pending[];
  scheduled: boolean;
}

/**
 * Turns the jobs this gateway accepts into envelopes: the jobs for one model
 * version accepted in the same turn of the event loop go to the queue
 * together, as one BullMQ job, written (records, index and counts) by one
 * script call. So a busy gateway pays the queue's cost once per envelope, not
 * once per job, and a lone request waits for nothing: its envelope is written
 * at the end of the turn that accepted it (setImmediate), with no timer.
 * An envelope holds at most `max_batch_size` jobs: a worker runs it whole.
 *
 * Backpressure is exact across gateways and queues, by allowances. The
 * limits (MAX_QUEUE_DEPTH; TENANT_MAX_QUEUED, per tenant) are over every
 * queue, but a queue's script can count only its own keys (they are in its
 * hash slot). So each queue holds an allowance of each limit, the allowances
 * adding up to at most the limit, and the enqueue script refuses an envelope
 * that would take its queue's count past its allowance: the counts add up to
 * at most the limit however many gateways write at once. Allowances change
 * only under the limits lock (see `makeRoom`): an envelope that does not fit
 * its queue's allowance takes the lock, moves unused allowance to its queue
 * from the pool or from other queues, and is written, or refused for what
 * still does not fit. A queue's first envelope takes the lock too; after it,
 * far from the limits, envelopes take no lock.
 */
export class EnvelopeWriter {
  private readonly open = new Map<string, Open>();
  private readonly queues = new Map<string, EnvelopeQueue>();
  /** The queues this gateway has put in the registry of interactive queues (as queueMember). */
  private readonly registered = new Set<string>();
  private readonly lock: LimitsLock;

  constructor(private readonly options: EnvelopeWriterOptions) {
    this.lock = new LimitsLock({ redis: options.redis, key: keys(options.prefix).limitsLock, waitMs: options.lockWaitMs });
  }

  /** The queue of a model version (created on first use). */
  queueOf(model: Pick<ModelVersion, 'name' | 'version'>): EnvelopeQueue {
    const key = `${model.name}\0${model.version}`;
    let queue = this.queues.get(key);
    if (!queue) {
      queue = new EnvelopeQueue(this.options.redis, { prefix: this.options.prefix, model: model.name, version: model.version, resultTtlMs: this.options.resultTtlMs });
      this.queues.set(key, queue);
    }
    return queue;
  }

  /**
   * Add a validated job to its model version's open envelope. Resolves once
   * the envelope is in Redis; rejects with 503 `queue_full` past
   * MAX_QUEUE_DEPTH, 429 `quota_exceeded` past TENANT_MAX_QUEUED, 503
   * `unavailable` (a closed queue, the limits lock not had in time), or with
   * Redis's error.
   */
  add(model: ModelVersion, job: EnvelopeJob, inputs: readonly DecodedTensor[]): Promise<void> {
    const key = `${model.name}\0${model.version}`;
    let open = this.open.get(key);
    if (!open) {
      open = { model, queue: this.queueOf(model), jobs: [], scheduled: false };
      this.open.set(key, open);
    }
    const promise = new Promise<void>((resolve, reject) => open.jobs.push({ job, inputs, done: (err) => (err ? reject(err) : resolve()) }));
    if (open.jobs.length >= Math.max(1, model.maxBatchSize)) {
      this.flush(open);
    } else if (!open.scheduled) {
      open.scheduled = true;
      setImmediate(() => this.flush(open));
    }
    return promise;
  }

  private flush(open: Open): void {
    open.scheduled = false;
    if (open.jobs.length === 0) return;
    const jobs = open.jobs;
    open.jobs = [];
    void this.write(open.model, open.queue, jobs);
  }

  /**
   * Write one envelope: at once when it fits its queue's allowances; else
   * under the limits lock, after making room (see `attempt`).
   */
  private async write(model: ModelVersion, queue: EnvelopeQueue, jobs: Pending[]): Promise<void> {
    const left: Left = { jobs, later: [] };
    try {
      await this.register(model);
      const ended = await this.attempt(model, queue, left, false);
      if (ended && left.later.length === 0) return;
      // What is left goes under the lock, in arrival order: what did not fit, and a capped tenant's jobs set aside.
      const waiting = new Set([...(ended ? [] : left.jobs), ...left.later]);
      left.jobs = jobs.filter((p) => waiting.has(p));
      left.later = [];
      await this.lock.hold((stillHeld) => this.attempt(model, queue, left, stillHeld));
    } catch (err) {
      for (const p of [...left.jobs, ...left.later]) p.done(err);
    }
  }

  /**
   * Enqueue `left.jobs`. Answers true when it has ended them (written, or
   * refused); false, with nothing written or answered, when they do not fit
   * an allowance and no lock is held (`stillHeld` absent). Without the lock,
   * jobs of a tenant over its own allowance are set aside (`left.later`, for
   * the lock) and the other tenants' jobs of the envelope tried at once: one
   * tenant at its cap does not hold up the others. Holding the lock, a
   * refusal makes room for its limit (once per limit), then keeps what still
   * fits, in arrival order, and tries again: it ends by a write or with
   * nothing left.
   */
  private async attempt(model: ModelVersion, queue: EnvelopeQueue, left: Left, stillHeld: (() => Promise<void>) | false): Promise<boolean> {
    const roomMade = new Set<string>();
    while (left.jobs.length > 0) {
      const remaining = left.jobs;
      const envelope = this.envelope(model, remaining);
      const outcome = await queue.enqueue(envelope);
      // An answer came, so the command was written whole: its packed inputs can be used again. (After an
      // error they are left to the collector: a command that timed out may still be written later.)
      tensorBuffers.release(envelope.inputs);
      if (outcome.accepted) {
        // The jobs' decoded inputs are in Redis now, and nothing reads them here again.
        for (const p of remaining) for (const t of p.inputs) tensorBuffers.release(t.data);
        this.options.onEnvelope?.(model, remaining.length);
        left.jobs = [];
        for (const p of remaining) p.done();
        return true;
      }
      if (outcome.over === 'closed') {
        // This gateway routed to a version its workers are unloading: its view of the routing is stale
        // (a change reaches every gateway within a second; workers close a queue only after longer).
        const gone = new AppError(503, 'unavailable', `Model "${model.name}" version ${model.version} is being unloaded; retry`, { retryAfterSeconds: 1 });
        left.jobs = [];
        for (const p of remaining) p.done(gone);
        return true;
      }
      if (outcome.over === 'inputs_lost') {
        // Redis let go of the inputs key between its write and the script (an evicting maxmemory-policy).
        const lost = new AppError(503, 'unavailable', "Redis dropped the job's inputs before queuing it (a queue's Redis needs maxmemory-policy noeviction); retry", { retryAfterSeconds: 1 });
        left.jobs = [];
        for (const p of remaining) p.done(lost);
        return true;
      }
      if (!stillHeld) {
        const over = outcome.over === 'tenant' ? outcome.tenant : undefined;
        const others = over === undefined ? [] : remaining.filter((p) => p.job.tenant !== over);
        if (others.length === 0) return false;
        left.later.push(...remaining.filter((p) => p.job.tenant === over));
        left.jobs = others;
        continue;
      }
      const of: LimitOf =
        outcome.over === 'depth' ? { kind: 'depth', limit: this.options.maxQueueDepth } : { kind: 'tenant', cap: this.options.tenantMaxQueued ?? 0, tenant: outcome.tenant };
      const theirs = of.kind === 'depth' ? remaining : remaining.filter((p) => p.job.tenant === of.tenant);
      const name = of.kind === 'depth' ? 'depth' : `tenant:${of.tenant}`;
      let room = outcome.allowed - outcome.queued;
      if (!roomMade.has(name)) {
        roomMade.add(name);
        room = await this.makeRoom(queue, of, theirs.length, stillHeld);
        if (room >= theirs.length) continue;
      }
      const keep = new Set(theirs.slice(0, Math.max(0, Math.min(room, theirs.length - 1))));
      const refusal =
        of.kind === 'depth'
          ? // The limit, not the count: the queues are every tenant's, and how much the others queued is theirs.
            new AppError(503, 'queue_full', `The queues are at their limit of ${this.options.maxQueueDepth} instances; retry later`, { retryAfterSeconds: 5 })
          : new AppError(429, 'quota_exceeded', `This tenant has ${this.options.tenantMaxQueued} instances queued, its limit (TENANT_MAX_QUEUED); retry later`, { retryAfterSeconds: 5 });
      const refused = new Set(theirs.filter((p) => !keep.has(p)));
      left.jobs = remaining.filter((p) => !refused.has(p));
      for (const p of refused) p.done(refusal);
    }
    return true;
  }

  /**
   * Holding the limits lock: raise `queue`'s allowance of `of` so that it
   * has room for `wanted` more instances, from the limit's unallocated pool,
   * then from other queues' unused allowance (lowered, never below their
   * counts). It takes more than it needs (half of what is left in the pool,
   * or a queue's share of the limit if more, taken back from others' unused
   * allowance when the pool is spent), so that the next envelopes fit
   * without the lock; a queue that needs it back later takes it back.
   * Answers the room the queue has now (less than `wanted` when the limit
   * is reached).
   */
  private async makeRoom(queue: EnvelopeQueue, of: LimitOf, wanted: number, stillHeld: () => Promise<void>): Promise<number> {
    const limit = of.kind === 'depth' ? of.limit : of.cap;
    const queues = await this.everyQueue();
    const held = await Promise.all(queues.map((q) => q.allowance(of)));
    // What each queue takes from the limit: its allowance, or its count where more (jobs queued under another limit).
    const takes = held.map((h) => Math.max(h.own, h.allowed));
    const at = queues.indexOf(queue);
    const mine = held[at]!;
    let free = limit - takes.reduce((a, b) => a + b, 0);
    const needed = mine.own + wanted - takes[at]!;
    // A queue's share of the limit beside what is needed, so that the next envelopes fit without the lock.
    const share = Math.ceil(limit / queues.length);
    // Unused allowance back from the other queues, the most unused first: what is needed from any of it, the
    // headroom from at most half of a queue's (it keeps room of its own). Taking back only what is needed left
    // a queue that came after the pool was spent with no room: every one of its envelopes took the lock.
    const others = queues.map((q, i) => ({ q, unused: held[i]!.allowed - held[i]!.own })).filter((o) => o.q !== queue && o.unused > 0);
    others.sort((a, b) => b.unused - a.unused);
    for (const o of others) {
      if (free >= needed + share) break;
      const ask = Math.max(needed - free, Math.min(needed + share - free, Math.floor(o.unused / 2)));
      if (ask <= 0) continue;
      await stillHeld();
      free += await o.q.reclaim(of, ask);
    }
    const spare = Math.max(share, Math.floor((free - needed) / 2));
    const grant = Math.max(0, Math.min(free, needed + spare));
    const allowed = takes[at]! + grant;
    // Written again even when unchanged: it may have been granted under another limit (see allowanceValue).
    await stillHeld();
    await queue.allow(of, allowed);
    return allowed - mine.own;
  }

  /** Every interactive queue any gateway has written to (the registry's), and every one this gateway knows. */
  private async everyQueue(): Promise<EnvelopeQueue[]> {
    const members = new Set<string>();
    for (const q of await registeredQueues(this.options.redis, this.options.prefix)) {
      this.queueOf(q);
      members.add(queueMember(q.name, q.version));
    }
    // Registered again, should the registry have been lost.
    const missing = [...this.registered].filter((m) => !members.has(m));
    if (missing.length > 0) await this.options.redis.sadd(keys(this.options.prefix).interactiveQueues, ...missing);
    return [...this.queues.values()];
  }

  private envelope(model: ModelVersion, jobs: readonly Pending[]): NewEnvelope {
    const data: EnvelopeData = { model: model.name, version: model.version, gateway: this.options.gatewayChannel, jobs: jobs.map((p) => p.job) };
    return {
      id: newEnvelopeId(),
      data,
      inputs: packInputs(model, jobs),
      instances: jobs.length,
      limit: this.options.maxQueueDepth,
      ...(this.options.tenantMaxQueued ? { tenantCap: this.options.tenantMaxQueued } : {}),
      now: platformNow(),
    };
  }

  /**
   * Put a queue in the registry of interactive queues before its first
   * envelope, so every gateway counts it (for the limits' allowances, the
   * queue gauges), whether or not it routes to that version (one SADD per
   * queue and process).
   */
  private async register(model: Pick<ModelVersion, 'name' | 'version'>): Promise<void> {
    const member = queueMember(model.name, model.version);
    if (this.registered.has(member)) return;
    await this.options.redis.sadd(keys(this.options.prefix).interactiveQueues, member);
    this.registered.add(member);
  }

  /** Flush what is open now (a closing gateway still writes what it accepted). */
  close(): void {
    for (const open of this.open.values()) this.flush(open);
  }
}

/**
 * The jobs' inputs as one buffer, input by input: all instances of the
 * model's first input, then all of the second… A worker running the whole
 * envelope feeds each input as a view of this buffer, with no copy.
 */
function packInputs(model: ModelVersion, jobs: readonly Pending[]): Buffer {
  let total = 0;
  for (const p of jobs) for (const t of p.inputs) total += t.data.byteLength;
  const out = tensorBuffers.acquire(total);
  let at = 0;
  for (let k = 0; k < model.inputs.length; k++) {
    for (const p of jobs) {
      const t = p.inputs[k]!;
      out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
      at += t.data.byteLength;
    }
  }
  return out;
}
