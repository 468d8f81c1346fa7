import { platformNow } from '@infer/contract';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';

/**
 * Which workers are alive, and which model versions each one serves.
 *
 * Every worker writes a small description of itself to Redis every
 * `HEARTBEAT_MS` (`{p}:{fleet}:worker:{id}`, expiring after `LIVE_MS`) and
 * its id, scored by time, to `{p}:{fleet}:workers` (`{fleet}`: one hash tag for all of them). A worker that dies stops
 * counting within `LIVE_MS`, with no one to clean up after it. Gateways read
 * the whole fleet at most once a `READ_MS`, so a question such as "does any
 * live worker serve mlp v3?" costs nothing per request.
 */

/** How often a worker says it is alive. */
export const HEARTBEAT_MS = 2000;
/** How long after its last heartbeat a worker still counts as alive: three heartbeats missed. */
export const LIVE_MS = 3 * HEARTBEAT_MS;
/** How stale a gateway's view of the fleet may be. */
export const READ_MS = 1000;

/**
 * `loading`: being loaded; `ready`: serving; `failed`: could not be loaded
 * (`error` says why); `draining`: removed or unloaded, still serving the
 * jobs already queued for it, unloaded once they are done.
 */
export type ServingState = 'loading' | 'ready' | 'failed' | 'draining';

/** One model version as a worker holds it. */
export interface ServedVersion {
  model: string;
  version: string;
  state: ServingState;
  /** Why it failed to load. */
  error?: string;
}

/** What a worker says about itself in each heartbeat. */
export interface WorkerDescription {
  id: string;
  host: string;
  pid: number;
  /** Epoch ms. */
  started_at: number;
  versions: ServedVersion[];
}

/** One hash tag for the whole fleet: a heartbeat's transaction and a gateway's read each stay in one slot. */
const fleetKeys = (prefix: string) => ({
  workers: `${prefix}:{fleet}:workers`,
  worker: (id: string) => `${prefix}:{fleet}:worker:${id}`,
});

/** A worker's heartbeat: start it once its models are known; it reports `versions()` each time. */
export class WorkerHeartbeat {
  private timer: NodeJS.Timeout | undefined;
  private readonly keys: ReturnType<typeof fleetKeys>;
  private readonly startedAt = platformNow();
  /** Set by stop(): a beat asked for afterwards (a drain ending during close) must not bring the worker back. */
  private stopped = false;

  constructor(
    private readonly redis: Redis,
    prefix: string,
    readonly id: string,
    private readonly versions: () => ServedVersion[],
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {
    this.keys = fleetKeys(prefix);
  }

  /** Beat now and every HEARTBEAT_MS; resolves after the first beat (or its failure, reported). */
  async start(): Promise<void> {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => void this.beat(), HEARTBEAT_MS);
    this.timer.unref();
    await this.beat();
  }

  /** Report now (a version finished loading, say), without waiting for the next beat. */
  async beat(): Promise<void> {
    if (this.stopped) return;
    const now = platformNow();
    const description: WorkerDescription = { id: this.id, host: hostname(), pid: process.pid, started_at: this.startedAt, versions: this.versions() };
    try {
      await this.redis
        .multi()
        .set(this.keys.worker(this.id), JSON.stringify(description), 'PX', LIVE_MS)
        .zadd(this.keys.workers, now, this.id)
        // The fleet's index is swept by its members: ids not seen for a while are dropped.
        .zremrangebyscore(this.keys.workers, '-inf', now - 10 * LIVE_MS)
        .exec();
    } catch (err) {
      this.onError(err);
    }
  }

  /**
   * Stop beating and leave the fleet at once (a graceful stop), so gateways
   * stop counting this worker now. With `leave: false` it only stops
   * beating, as a crashed worker does: it stops counting after LIVE_MS.
   */
  async stop({ leave = true }: { leave?: boolean } = {}): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (!leave) return;
    // A beat already sent went on this connection before the leave, so Redis runs it first.
    try {
      await this.redis.multi().del(this.keys.worker(this.id)).zrem(this.keys.workers, this.id).exec();
    } catch (err) {
      this.onError(err);
    }
  }
}

/**
 * The live workers that have a version loaded: ready, or draining (unloaded,
 * still serving the jobs queued for it). docs/api.md's `workers_ready`.
 */
export const workersHolding = (v: VersionInFleet | undefined): number => (v ? v.workersReady + v.draining : 0);

/** Per model version: how many live workers have it ready, and what the others say of it. */
export interface VersionInFleet {
  workersReady: number;
  loading: number;
  failed: number;
  draining: number;
  /** A failed worker's reason, when one failed. */
  error?: string;
}

/** A gateway's view of the fleet, read from Redis at most once a READ_MS. */
export class FleetView {
  private readonly keys: ReturnType<typeof fleetKeys>;
  private workers: WorkerDescription[] = [];
  private byVersion = new Map<string, VersionInFleet>();
  private readAt = -Infinity;
  private reading: Promise<void> | undefined;

  constructor(
    private readonly redis: Redis,
    prefix: string,
  ) {
    this.keys = fleetKeys(prefix);
  }

  /**
   * The live workers. A view older than READ_MS is read again in the
   * background and this answer is the one at hand (a request never waits
   * for the fleet), except the first time, which waits for it.
   */
  async live(): Promise<WorkerDescription[]> {
    if (performance.now() - this.readAt > READ_MS) {
      this.reading ??= this.read().finally(() => (this.reading = undefined));
      if (this.readAt === -Infinity) await this.reading;
      else this.reading.catch(() => undefined);
    }
    return this.workers;
  }

  /** Read the fleet now (a gateway that just changed something, a test that just started a worker). */
  async refresh(): Promise<void> {
    this.reading ??= this.read().finally(() => (this.reading = undefined));
    await this.reading;
  }

  /** Each model version's standing in the fleet, keyed `versionKey(model, version)`. */
  async versions(): Promise<Map<string, VersionInFleet>> {
    await this.live();
    return this.byVersion;
  }

  /**
   * Whether a job for this version may be queued: some live worker has it
   * ready or is loading it (its jobs wait the moments that takes), or no
   * worker is alive at all (the whole fleet is restarting or
   * scaled to zero: jobs wait in the queue for it, which is what a queue is
   * for). False only when workers are alive and none of them serves it: a
   * queue nobody would read.
   */
  async served(model: string, version: string): Promise<boolean> {
    const live = await this.live();
    const v = this.byVersion.get(versionKey(model, version));
    return live.length === 0 || (v !== undefined && v.workersReady + v.loading > 0);
  }

  private tally(workers: readonly WorkerDescription[]): Map<string, VersionInFleet> {
    const out = new Map<string, VersionInFleet>();
    for (const w of workers) {
      for (const v of w.versions) {
        const key = versionKey(v.model, v.version);
        const entry = out.get(key) ?? { workersReady: 0, loading: 0, failed: 0, draining: 0 };
        if (v.state === 'ready') entry.workersReady++;
        else if (v.state === 'loading') entry.loading++;
        else if (v.state === 'draining') entry.draining++;
        else {
          entry.failed++;
          if (v.error) entry.error = v.error;
        }
        out.set(key, entry);
      }
    }
    return out;
  }

  private async read(): Promise<void> {
    const ids = await this.redis.zrangebyscore(this.keys.workers, platformNow() - LIVE_MS, '+inf');
    const raw = ids.length ? await this.redis.mget(...ids.map((id) => this.keys.worker(id))) : [];
    const workers: WorkerDescription[] = [];
    for (const text of raw) {
      if (!text) continue; // expired between the two reads: not live
      try {
        workers.push(JSON.parse(text) as WorkerDescription);
      } catch {
        /* a corrupt entry counts as no worker */
      }
    }
    this.workers = workers;
    this.byVersion = this.tally(workers);
    this.readAt = performance.now();
  }
}

export const versionKey = (model: string, version: string): string => `${model}\0${version}`;
