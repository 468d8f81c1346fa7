import type { Redis } from 'ioredis';
import { Counter, Gauge, type Registry } from 'prom-client';
import { interactiveKeys, platformNow } from '@infer/contract';
import { oldestQueuedAt, oldestWaiting, versionsWithQueues } from '@infer/job-store';
import { versionKey, workersHolding, type FleetView, type VersionInFleet } from '@infer/fleet';
import type { BulkQueues } from './batches/bulk-queues.js';

export interface QueueMetricsDeps {
  /** A command connection (the gateway's: no offline queue, so a scrape while Redis is away fails fast). */
  redis: Redis;
  prefix: string;
  /** The model versions this gateway routes to. */
  versions: () => ReadonlyArray<{ name: string; version: string }>;
  bulkQueues: BulkQueues;
  fleet: FleetView;
  registry: Registry;
  /** Longest a scrape waits for Redis; past it the gauges keep their last values. @default 2000 */
  timeoutMs?: number;
}

/** One model version's queues, as read at one scrape. */
interface VersionQueues {
  model: string;
  version: string;
  /** Interactive instances accepted and not yet taken. */
  queued: number;
  /** Epoch ms the oldest waiting envelope was written, or null when none waits. */
  oldestAt: number | null;
  bulk: { waiting: number; active: number; delayed: number };
  bulkOldestAt: number | null;
}

interface Snapshot {
  /** When it was read, on the platform's clock (platformNow): an interactive envelope's enqueue time is on it. */
  at: number;
  /** The same moment on this host's clock: BullMQ stamps a bulk chunk with the clock of the gateway that queued it. */
  atHost: number;
  queues: VersionQueues[];
  fleet: Map<string, VersionInFleet>;
  liveWorkers: number;
}

const QUEUE_KINDS = ['interactive', 'bulk'] as const;
const FLEET_STATES = ['ready', 'draining', 'loading', 'failed'] as const;

/**
 * Queue depth, the age of the oldest queued job, bulk backlog and worker
 * liveness per model version, read from Redis when Prometheus scrapes, so
 * every gateway reports the same fleet-wide figures and no request pays for
 * them. A scrape costs O(model versions) commands, pipelined: SMEMBERS of
 * the registry of interactive queues (with a GET `queued` for each version
 * there that this gateway does not serve, reported when jobs are queued);
 * per version GET `queued` and OLDEST_WAITING (the oldest envelope with a job not
 * canceled, from the right of `wait`: BullMQ pushes on the left and takes
 * from the right); for the bulk queue LINDEX `wait` -1, then HGET of that
 * chunk's `timestamp`, with BullMQ's job counts. The
 * fleet comes from the gateway's FleetView (read at most once a second).
 * All gauges of one scrape share one read.
 */
export class QueueMetrics {
  private reading: Promise<Snapshot | undefined> | undefined;

  constructor(private readonly deps: QueueMetricsDeps) {
    const { registry } = deps;
    const errors = new Counter({
      name: 'infer_queue_metrics_errors_total',
      help: 'Scrapes whose read of the queues from Redis failed or timed out (the queue gauges then keep their last values)',
      registers: [registry],
    });
    errors.inc(0);
    const read = async (): Promise<Snapshot | undefined> => {
      this.reading ??= this.read()
        .catch(() => {
          errors.inc();
          return undefined;
        })
        .finally(() => (this.reading = undefined));
      return this.reading;
    };
    /** A gauge filled from the shared snapshot; a failed read leaves its last values. */
    const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[], fill: (g: Gauge<L>, s: Snapshot) => void) =>
      new Gauge<L>({
        name,
        help,
        labelNames,
        registers: [registry],
        async collect() {
          const snapshot = await read();
          if (!snapshot) return;
          this.reset();
          fill(this, snapshot);
        },
      });

    gauge('infer_queue_depth', 'Interactive instances queued and not yet taken by a worker (what MAX_QUEUE_DEPTH counts), fleet-wide', ['model', 'version'], (g, s) => {
      for (const q of s.queues) g.set({ model: q.model, version: q.version }, q.queued);
    });
    gauge(
      'infer_queue_oldest_age_seconds',
      'Age of the oldest job waiting for a worker (interactive: its envelope; bulk: its chunk); 0 when none waits',
      ['model', 'version', 'queue'],
      (g, s) => {
        for (const q of s.queues) {
          for (const queue of QUEUE_KINDS) {
            const [at, now] = queue === 'interactive' ? [q.oldestAt, s.at] : [q.bulkOldestAt, s.atHost];
            g.set({ model: q.model, version: q.version, queue }, at === null ? 0 : Math.max(0, now - at) / 1000);
          }
        }
      },
    );
    gauge('infer_bulk_queue_chunks', 'Chunks of bulk batches in the bulk queue, by BullMQ state (waiting includes prioritized)', ['model', 'version', 'state'], (g, s) => {
      for (const q of s.queues) {
        for (const [state, n] of Object.entries(q.bulk)) g.set({ model: q.model, version: q.version, state }, n);
      }
    });
    gauge(
      'infer_queue_backlog_per_worker',
      'Queued interactive instances per live worker holding the version, ready or draining (as SageMaker ApproximateBacklogSizePerInstance); with none, the whole depth',
      ['model', 'version'],
      (g, s) => {
        for (const q of s.queues) {
          // A draining worker still takes the version's queued jobs: it counts, as in /readyz's workers_ready.
          const holding = workersHolding(s.fleet.get(versionKey(q.model, q.version)));
          g.set({ model: q.model, version: q.version }, q.queued / Math.max(1, holding));
        }
      },
    );
    gauge('infer_fleet_workers', 'Live workers (heartbeat within 6 s) holding the version, by state', ['model', 'version', 'state'], (g, s) => {
      const keys = new Set([...s.queues.map((q) => versionKey(q.model, q.version)), ...s.fleet.keys()]);
      for (const key of keys) {
        const [model = '', version = ''] = key.split('\0');
        const v = s.fleet.get(key);
        for (const state of FLEET_STATES) {
          g.set({ model, version, state }, v ? (state === 'ready' ? v.workersReady : v[state]) : 0);
        }
      }
    });
    gauge('infer_fleet_workers_live', 'Live workers (heartbeat within 6 s), whatever they serve', [], (g, s) => {
      g.set(s.liveWorkers);
    });
  }

  private async read(): Promise<Snapshot> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('queue metrics: Redis did not answer in time')), this.deps.timeoutMs ?? 2000);
    });
    try {
      return await Promise.race([this.readNow(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * This gateway's versions, and every other one in the registry of
   * queues whose interactive or bulk queue holds work: a version removed
   * from the repository (or never loaded here) keeps its queues until
   * workers drain them, and every gateway must report them alike.
   */
  private versionsToRead(): Promise<Array<{ name: string; version: string }>> {
    return versionsWithQueues(this.deps.redis, this.deps.prefix, this.deps.versions());
  }

  private async readNow(): Promise<Snapshot> {
    const { redis, prefix, bulkQueues, fleet } = this.deps;
    const versions = await this.versionsToRead();
    const [queues, live, byVersion] = await Promise.all([
      Promise.all(
        versions.map(async ({ name, version }): Promise<VersionQueues> => {
          const keys = interactiveKeys(prefix, name, version);
          const bulk = bulkQueues.get(name, version);
          const [queued, oldest, counts, bulkOldest] = await Promise.all([
            redis.get(keys.queued),
            // Past the envelopes whose jobs were all canceled: they stay in `wait` until a worker takes
            // them, and an alert on the age must not fire for them.
            oldestWaiting(redis, prefix, name, version),
            bulk.getJobCounts('wait', 'prioritized', 'active', 'delayed'),
            redis.lindex(bulk.toKey('wait'), -1),
          ]);
          const bulkOldestAt = await timestampOf(redis, bulkOldest, bulk.toKey(''));
          const waiting = Math.max(0, Number(queued ?? 0));
          return {
            model: name,
            version,
            queued: waiting,
            // An envelope put back by the stalled check counts (oldestQueuedAt): one that keeps killing its
            // workers is exactly what an alert on the age is for.
            oldestAt: oldestQueuedAt(oldest, waiting),
            bulk: { waiting: (counts.wait ?? 0) + (counts.prioritized ?? 0), active: counts.active ?? 0, delayed: counts.delayed ?? 0 },
            bulkOldestAt,
          };
        }),
      ),
      fleet.live(),
      fleet.versions(),
    ]);
    return { at: platformNow(), atHost: Date.now(), queues, fleet: byVersion, liveWorkers: live.length };
  }
}

/** The `timestamp` (epoch ms) of a BullMQ job hash: `base` + its id. Null when there is no job, or it went meanwhile. */
async function timestampOf(redis: Redis, id: string | null, base: string): Promise<number | null> {
  if (!id) return null;
  const ts = await redis.hget(base + id, 'timestamp');
  return ts === null ? null : Number(ts);
}
