import type { Logger } from '@infer/logger';

/** How held locks are renewed: BullMQ's `extendLocks` script, one call for all of them; resolves with the ids it could not renew. */
export type ExtendLocks = (ids: string[], tokens: string[], lockMs: number) => Promise<string[]>;

/**
 * Keeps the BullMQ locks of the jobs a consumer holds. Fetching by hand
 * means BullMQ's own lock renewal does not run, so every `lockMs / 2` the
 * locks of all held jobs are extended in one call. A job whose worker dies
 * loses its lock after `lockMs`, and a stalled check puts it back in the queue.
 *
 * A renewal can fail for a job that was not lost: its end removed the job
 * (and its lock) in Redis, and the renewal's answer came back before the
 * end's, while the job was still held here. Such a job is released before
 * the next renewal, so a lost lock is only reported when the same held job
 * fails two renewals in a row, once.
 */
export class LockKeeper {
  private readonly held = new Map<string, string>();
  /** Held jobs whose last renewal failed: 1 after one failure, 2 once reported lost. */
  private readonly failures = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private renewing = false;

  constructor(
    private readonly lockMs: number,
    private readonly extend: ExtendLocks,
    private readonly logger: Logger,
  ) {
    this.timer = setInterval(() => void this.renew(), Math.max(500, Math.floor(lockMs / 2)));
    this.timer.unref();
  }

  hold(id: string, token: string): void {
    this.held.set(id, token);
  }

  release(id: string): void {
    this.held.delete(id);
    this.failures.delete(id);
  }

  get size(): number {
    return this.held.size;
  }

  private async renew(): Promise<void> {
    if (this.renewing || this.held.size === 0) return;
    this.renewing = true;
    const ids = [...this.held.keys()];
    try {
      const failed = new Set(await this.extend(ids, ids.map((id) => this.held.get(id)!), this.lockMs));
      for (const id of ids) {
        // A job released while the renewal was in flight was finished, not lost.
        if (!this.held.has(id)) continue;
        if (!failed.has(id)) {
          this.failures.delete(id);
          continue;
        }
        const count = (this.failures.get(id) ?? 0) + 1;
        if (count === 2) this.logger.warn({ jobId: id }, 'lost the lock of a held job; another worker may run it again');
        this.failures.set(id, Math.min(count, 2));
      }
    } catch (err) {
      this.logger.warn({ err: (err as Error).message, jobs: ids.length }, 'lock renewal failed');
    } finally {
      this.renewing = false;
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.held.clear();
    this.failures.clear();
  }
}
