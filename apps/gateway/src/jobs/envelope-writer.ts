import type { Redis } from 'ioredis';
import { keys, newEnvelopeId, queueMember, type EnvelopeData, type EnvelopeJob } from '@infer/contract';
import { AppError } from '@infer/errors';
import { EnvelopeQueue, registeredQueues } from '@infer/job-store';
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
  /** How stale another queue's depth may be when a submit is checked against the limit. @default 250 */
  depthRefreshMs?: number;
  /** Told the size of every envelope written, for metrics. */
  onEnvelope?: (model: ModelVersion, instances: number) => void;
}

interface Pending {
  job: EnvelopeJob;
  inputs: readonly DecodedTensor[];
  done: (err?: unknown) => void;
}

interface Open {
  model: ModelVersion;
  queue: EnvelopeQueue;
  jobs: Pending[];
  scheduled: boolean;
}

/** An envelope this gateway is writing: its instances, which the enqueue has not counted in Redis yet. */
interface Writing {
  /** Its queue's `queued` key. */
  queue: string;
  instances: number;
  /** Its instances by tenant (with TENANT_MAX_QUEUED only). */
  byTenant?: Map<string, number>;
  /** Waiting its turn for the limits lock: it will count the queues afresh itself. */
  queuing: boolean;
}

/** The limits an enqueue is checked against: MAX_QUEUE_DEPTH and TENANT_MAX_QUEUED, or a queue's share of them. */
interface Limits {
  depth: number;
  /** Absent: tenants are not counted. */
  tenant: number | undefined;
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
 * Backpressure holds across gateways and queues. The enqueue script counts
 * its queue's instances and refuses an envelope that would pass the limit,
 * the other queues' counts added as this gateway last read them (at most
 * `depthRefreshMs` old while submits come in; nothing is read while idle)
 * plus what it is itself writing to them. Those other counts may be stale,
 * so an envelope is written that way only within its queue's share of the
 * limits; past it, under the limits lock, with every queue counted afresh
 * (see `write`).
 */
export class EnvelopeWriter {
  private readonly open = new Map<string, Open>();
  private readonly queues = new Map<string, EnvelopeQueue>();
  /** Last known queued instances per queue (its `queued` key). */
  private readonly depth = new Map<string, number>();
  /** Last known queued instances per queue and tenant (with TENANT_MAX_QUEUED). */
  private readonly tenantDepth = new Map<string, Map<string, number>>();
  /** The queues this gateway has put in the registry of interactive queues (as queueMember). */
  private readonly registered = new Set<string>();
  private depthReadAt = -Infinity;
  private depthReading: Promise<void> | undefined;
  /** Envelopes being written, oldest first (a Set keeps insertion order). */
  private readonly writing = new Set<Writing>();
  private readonly lock: LimitsLock;

  constructor(private readonly options: EnvelopeWriterOptions) {
    this.lock = new LimitsLock({ redis: options.redis, key: keys(options.prefix).limitsLock });
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
   * the envelope is in Redis; rejects with 503 `queue_full` when it would
   * pass MAX_QUEUE_DEPTH, or with Redis's error.
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
   * Write one envelope. When a limit refuses it (nothing is written then),
   * what still fits is written in arrival order and the rest is refused:
   * 503 `queue_full` past MAX_QUEUE_DEPTH, 429 `quota_exceeded` for the jobs
   * of a tenant past TENANT_MAX_QUEUED.
   *
   * The limits are over every queue, and a queue's script counts only its
   * own exactly. So far from the limits an envelope may fill its queue only
   * to that queue's share of them (a limit over the number of queues, the
   * other queues' counts as last read added): gateways writing at once to
   * different queues, each blind to what the others write, stay under the
   * limits together. An envelope past its share is written under the limits
   * lock instead, every queue counted afresh (see LimitsLock).
   */
  private async write(model: ModelVersion, queue: EnvelopeQueue, jobs: Pending[]): Promise<void> {
    // Counted against the envelopes begun after this one, for other queues, until the script has counted it.
    const mine = this.writingOf(queue.keys.queued, jobs);
    const left = { jobs };
    this.writing.add(mine);
    try {
      await this.register(model);
      const elsewhere = (await this.queuedElsewhere(queue)) + this.writingAhead(mine, (w) => w.instances);
      const tenantElsewhere = (tenant: string) => this.tenantElsewhere(queue, tenant) + this.writingAhead(mine, (w) => w.byTenant?.get(tenant) ?? 0);
      const shares = Math.max(1, this.queues.size);
      const share: Limits = {
        depth: Math.floor(this.options.maxQueueDepth / shares),
        tenant: this.options.tenantMaxQueued && Math.floor(this.options.tenantMaxQueued / shares),
      };
      const withinShare =
        share.depth >= 1 &&
        share.tenant !== 0 &&
        (this.depth.get(queue.keys.queued) ?? 0) + elsewhere + jobs.length <= share.depth &&
        (await this.attempt(model, queue, mine, left, share, elsewhere, tenantElsewhere, false));
      if (withinShare) return;
      mine.queuing = true;
      await this.lock.hold(async () => {
        mine.queuing = false;
        await this.readDepths();
        // This gateway's envelopes to other queues not answered yet, the read may not have seen (those
        // waiting for the lock will count afresh themselves).
        const inFlight = (count: (w: Writing) => number) => {
          let sum = 0;
          for (const w of this.writing) if (w !== mine && !w.queuing && w.queue !== mine.queue) sum += count(w);
          return sum;
        };
        let sum = 0;
        for (const [key, n] of this.depth) if (key !== queue.keys.queued) sum += n;
        const limits: Limits = { depth: this.options.maxQueueDepth, tenant: this.options.tenantMaxQueued };
        await this.attempt(model, queue, mine, left, limits, sum + inFlight((w) => w.instances), (t) => this.tenantElsewhere(queue, t) + inFlight((w) => w.byTenant?.get(t) ?? 0), true);
      });
    } catch (err) {
      for (const p of left.jobs) p.done(err);
    } finally {
      this.writing.delete(mine);
    }
  }

  /**
   * Enqueue `left.jobs` under `limits`. Answers true when it has ended them
   * (written, or refused); false, with nothing written or answered, when a
   * limit refused them and `exact` is false: the caller counts afresh then.
   * With `exact`, a refusal keeps what still fits (in arrival order) and
   * tries again, so it ends by a write or with nothing left to write.
   */
  private async attempt(
    model: ModelVersion,
    queue: EnvelopeQueue,
    mine: Writing,
    left: { jobs: Pending[] },
    limits: Limits,
    elsewhere: number,
    tenantElsewhere: (tenant: string) => number,
    exact: boolean,
  ): Promise<boolean> {
    while (left.jobs.length > 0) {
      const remaining = left.jobs;
      const envelope = this.envelope(model, remaining, limits, elsewhere, tenantElsewhere);
      const outcome = await queue.enqueue(envelope);
      // An answer came, so the command was written whole: its packed inputs can be used again. (After an
      // error they are left to the collector: a command that timed out may still be written later.)
      tensorBuffers.release(envelope.inputs);
      if (outcome.accepted) {
        // The jobs' decoded inputs are in Redis now, and nothing reads them here again.
        for (const p of remaining) for (const t of p.inputs) tensorBuffers.release(t.data);
        this.depth.set(queue.keys.queued, outcome.queued);
        // Each tenant's count here as the script left it: every gateway's jobs in it, not only this one's.
        if (this.options.tenantMaxQueued) for (const [tenant, n] of outcome.tenants) this.tenantOf(queue).set(tenant, n);
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
      if (!exact) return false;
      if (outcome.over === 'depth') {
        this.depth.set(queue.keys.queued, outcome.queued);
        const room = Math.max(0, this.options.maxQueueDepth - outcome.queued - elsewhere);
        // The limit, not the count: the queues are every tenant's, and how much the others queued is theirs.
        const full = new AppError(503, 'queue_full', `The queues are at their limit of ${this.options.maxQueueDepth} instances; retry later`, { retryAfterSeconds: 5 });
        // (Room for them all would be a count gone stale between the two reads: refuse them all then.)
        const keep = room < remaining.length ? room : 0;
        for (const p of remaining.slice(keep)) p.done(full);
        left.jobs = remaining.slice(0, keep);
      } else {
        const { tenant } = outcome;
        this.tenantOf(queue).set(tenant, outcome.queued);
        const room = Math.max(0, (this.options.tenantMaxQueued ?? 0) - outcome.queued - tenantElsewhere(tenant));
        const over = new AppError(429, 'quota_exceeded', `This tenant has ${this.options.tenantMaxQueued} instances queued, its limit (TENANT_MAX_QUEUED); retry later`, { retryAfterSeconds: 5 });
        const theirs = remaining.filter((p) => p.job.tenant === tenant).length;
        const keep = room < theirs ? room : 0;
        let kept = 0;
        left.jobs = remaining.filter((p) => {
          if (p.job.tenant !== tenant || kept++ < keep) return true;
          p.done(over);
          return false;
        });
      }
      Object.assign(mine, this.writingOf(mine.queue, left.jobs));
    }
    return true;
  }

  /**
   * `count` summed over the envelopes begun before `mine` and still being
   * written (`writing` keeps its order; one that has ended is in `depth` now,
   * or was refused), for queues other than its own: that one the script
   * counts exactly.
   */
  private writingAhead(mine: Writing, count: (w: Writing) => number): number {
    let sum = 0;
    for (const w of this.writing) {
      if (w === mine) break;
      if (w.queue !== mine.queue) sum += count(w);
    }
    return sum;
  }

  private writingOf(queue: string, jobs: readonly Pending[]): Writing {
    if (!this.options.tenantMaxQueued) return { queue, instances: jobs.length, queuing: false };
    const byTenant = new Map<string, number>();
    for (const p of jobs) byTenant.set(p.job.tenant, (byTenant.get(p.job.tenant) ?? 0) + 1);
    return { queue, instances: jobs.length, byTenant, queuing: false };
  }

  private tenantOf(queue: EnvelopeQueue): Map<string, number> {
    let m = this.tenantDepth.get(queue.keys.queued);
    if (!m) this.tenantDepth.set(queue.keys.queued, (m = new Map()));
    return m;
  }

  /** A tenant's queued instances in every other queue, as last read. */
  private tenantElsewhere(queue: EnvelopeQueue, tenant: string): number {
    let sum = 0;
    for (const [key, m] of this.tenantDepth) if (key !== queue.keys.queued) sum += m.get(tenant) ?? 0;
    return sum;
  }

  private envelope(model: ModelVersion, jobs: readonly Pending[], limits: Limits, queuedElsewhere: number, tenantElsewhere: (tenant: string) => number) {
    const data: EnvelopeData = { model: model.name, version: model.version, gateway: this.options.gatewayChannel, jobs: jobs.map((p) => p.job) };
    return {
      id: newEnvelopeId(),
      data,
      inputs: packInputs(model, jobs),
      instances: jobs.length,
      limit: limits.depth,
      queuedElsewhere,
      ...(limits.tenant ? { tenantCap: { max: limits.tenant, elsewhere: tenantElsewhere } } : {}),
      now: Date.now(),
    };
  }

  /**
   * Put a queue in the registry of interactive queues before its first
   * envelope, so every gateway counts it from its next look on, whether or
   * not it routes to that version (one SADD per queue and process).
   */
  private async register(model: Pick<ModelVersion, 'name' | 'version'>): Promise<void> {
    const member = queueMember(model.name, model.version);
    if (this.registered.has(member)) return;
    await this.options.redis.sadd(keys(this.options.prefix).interactiveQueues, member);
    this.registered.add(member);
  }

  /** Queued instances in every other interactive queue (the registry's), refreshed when stale. */
  private async queuedElsewhere(queue: EnvelopeQueue): Promise<number> {
    if (performance.now() - this.depthReadAt > (this.options.depthRefreshMs ?? 250)) {
      this.depthReading ??= this.readDepths().finally(() => (this.depthReading = undefined));
      await this.depthReading;
    }
    let sum = 0;
    for (const [key, n] of this.depth) if (key !== queue.keys.queued) sum += n;
    return sum;
  }

  private async readDepths(): Promise<void> {
    // Every queue any gateway wrote to, this one's own included (again, should the registry have been lost).
    const members = new Set<string>();
    for (const q of await registeredQueues(this.options.redis, this.options.prefix)) {
      this.queueOf(q);
      members.add(queueMember(q.name, q.version));
    }
    const missing = [...this.registered].filter((m) => !members.has(m));
    if (missing.length > 0) await this.options.redis.sadd(keys(this.options.prefix).interactiveQueues, ...missing);
    const queues = [...this.queues.values()];
    const counts = await Promise.all(queues.map((q) => q.queued()));
    queues.forEach((q, i) => this.depth.set(q.keys.queued, counts[i]!));
    if (this.options.tenantMaxQueued) {
      const byTenant = await Promise.all(queues.map((q) => q.queuedByTenant()));
      queues.forEach((q, i) => this.tenantDepth.set(q.keys.queued, byTenant[i]!));
    }
    this.depthReadAt = performance.now();
  }

  /** A job canceled before a worker took it left its queue's counts: so does this gateway's view of them. */
  canceledQueued(model: Pick<ModelVersion, 'name' | 'version'>, tenant: string): void {
    const queue = this.queueOf(model);
    const depth = this.depth.get(queue.keys.queued);
    if (depth !== undefined) this.depth.set(queue.keys.queued, Math.max(0, depth - 1));
    const counts = this.tenantDepth.get(queue.keys.queued);
    const n = counts?.get(tenant);
    if (counts && n !== undefined) counts.set(tenant, Math.max(0, n - 1));
  }

  /** Queued instances over every queue this gateway knows (read now), for metrics and tests. */
  async queuedTotal(): Promise<number> {
    await this.readDepths();
    let sum = 0;
    for (const n of this.depth.values()) sum += n;
    return sum;
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
