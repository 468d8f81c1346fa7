import { platformNow } from '@infer/contract';
import { versionKey, type FleetView } from '@infer/fleet';
import type { EnvelopeQueue } from '@infer/job-store';
import { awaitAtMost } from '@infer/lifecycle';
import type { Logger } from '@infer/logger';
import type { ModelVersion } from '@infer/models';

/** How often a gateway looks for jobs past their deadline in the queues no worker sweeps (as often as the workers do). */
const SWEEP_EVERY_MS = 1000;
/** Most deadlines ended per queue and sweep (the rest next second), as a worker's sweep. */
const MOST_PER_SWEEP = 100;
/** Longest a closing gateway waits for a sweep in flight (a few round trips with Redis up). */
const CLOSE_WAIT_MS = 1000;

export interface DeadlineSweepOptions {
  /** The model versions whose queues to look at: those this gateway has loaded, and draining ones it let go of that still hold work. */
  versions: () => ReadonlyArray<Pick<ModelVersion, 'name' | 'version'>>;
  queueOf: (version: Pick<ModelVersion, 'name' | 'version'>) => EnvelopeQueue;
  fleet: Pick<FleetView, 'versions'>;
  /** End a job still queued past its deadline: true when it has ended (here or elsewhere). */
  expire: (id: string) => Promise<boolean>;
  logger: Logger;
}

/**
 * Jobs still queued at their Cancel-After deadline end `deadline_exceeded`
 * within a second, told to their webhooks and freeing their place in the
 * queue and tenant limits, even while no worker serves their version. The
 * workers of a version sweep its queue each second; while none is live for
 * it (the fleet restarting or scaled to zero, a version still loading),
 * every gateway sweeps it instead. The cancel commits once whoever sweeps,
 * and only while the job is still queued: a worker that took it in time
 * runs it.
 */
export class DeadlineSweep {
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<unknown> | undefined;

  constructor(private readonly o: DeadlineSweepOptions) {}

  start(): void {
    this.timer = setInterval(() => {
      this.sweeping ??= this.sweep()
        .catch((err: unknown) => this.o.logger.warn({ err: (err as Error).message }, 'deadline sweep failed'))
        .finally(() => (this.sweeping = undefined));
    }, SWEEP_EVERY_MS);
    this.timer.unref();
  }

  /** One look at every queue no live worker sweeps; answers how many jobs ended. */
  async sweep(now = platformNow()): Promise<number> {
    const fleet = await this.o.fleet.versions();
    let ended = 0;
    const seen = new Set<string>();
    for (const version of this.o.versions()) {
      const key = versionKey(version.name, version.version);
      if (seen.has(key)) continue;
      seen.add(key);
      const standing = fleet.get(key);
      // Ready and draining workers run a version's consumers, and sweep its queue themselves.
      if (standing && standing.workersReady + standing.draining > 0) continue;
      ended += await this.o.queueOf(version).sweepDeadlines(now, MOST_PER_SWEEP, this.o.expire);
    }
    return ended;
  }

  /** Stop sweeping. A sweep in flight waits for Redis while it is away: it is given a second, then let go. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await awaitAtMost(this.sweeping ?? Promise.resolve(), CLOSE_WAIT_MS);
  }
}
