import type { Job } from 'bullmq';
import type { Logger } from '@infer/logger';

/**
 * Keeps the BullMQ locks of the jobs this worker holds. Fetching by hand
 * (to batch) means BullMQ's own lock renewal does not run, so every
 * `lockMs / 2` the lock of each held job is extended. A job whose worker dies
 * loses its lock after `lockMs` and another worker's stalled check requeues it.
 */
export class LockKeeper {
  private readonly held = new Map<string, { job: Job; token: string }>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly lockMs: number,
    private readonly logger: Logger,
  ) {
    this.timer = setInterval(() => void this.renew(), Math.max(500, Math.floor(lockMs / 2)));
    this.timer.unref();
  }

  hold(job: Job, token: string): void {
    this.held.set(job.id!, { job, token });
  }

  release(jobId: string): void {
    this.held.delete(jobId);
  }

  get size(): number {
    return this.held.size;
  }

  private async renew(): Promise<void> {
    await Promise.all(
      [...this.held.values()].map(async ({ job, token }) => {
        try {
          const ok = await job.extendLock(token, this.lockMs);
          // A job released while the renewal was in flight was completed, not lost.
          if (!ok && this.held.has(job.id!)) {
            this.logger.warn({ jobId: job.id }, 'lost the lock of a held job; another worker may run it again');
          }
        } catch (err) {
          this.logger.warn({ jobId: job.id, err: (err as Error).message }, 'lock renewal failed');
        }
      }),
    );
  }

  stop(): void {
    clearInterval(this.timer);
    this.held.clear();
  }
}
