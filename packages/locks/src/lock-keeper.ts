import type { Logger } from '@infer/logger';
import { LockRenewal, type HeldSnapshot, type RenewalReport, type RenewedQueue } from './lock-renewal.js';

/**
 * Keeps the BullMQ locks of the jobs a consumer holds. Fetching by hand
 * means BullMQ's own lock renewal does not run; the process's lock-renewal
 * thread (LockRenewal) extends the locks of all held jobs every
 * `lockMs / 2` in one call, through model runs that hold the event loop,
 * and stops once the event loop has been blocked past `maxRunMs`. A job
 * whose worker dies or hangs loses its lock after `lockMs`, and a stalled
 * check puts it back in the queue.
 *
 * What is held is written to the thread's snapshot once per turn of the
 * event loop that changed it, with the tokens of the takes in flight: an
 * idle consumer keeps a blocking take waiting while a batch runs, and Redis
 * may run it, locking what it takes, before the event loop can read the reply.
 *
 * A renewal can fail for a job that was not lost: its end removed the job
 * (and its lock) in Redis, and the renewal's answer came back before the
 * end's, while the job was still held here. Such a job is released before
 * the next renewal, so a lost lock is only reported when the same held job
 * fails two renewals in a row, once.
 */
export class LockKeeper {
  private readonly held = new Map<string, string>();
  /** Tokens of takes sent and not yet answered here: Redis may have run them (and locked their jobs) while a run blocks the event loop. */
  private readonly takes = new Set<string>();
  /** Token prefixes of takes this consumer cannot see coming (a BullMQ Worker that takes by itself). */
  private readonly takers = new Set<string>();
  /** Held jobs whose last renewal failed: 1 after one failure, 2 once reported lost. */
  private readonly failures = new Map<string, number>();
  /** The held set changed since the thread's snapshot was last written. */
  private dirty = false;
  private readonly renewal: { renewal: LockRenewal; id: number; held: HeldSnapshot } | undefined;
  private stopped = false;

  constructor(
    /** The queue whose locks the thread renews; undefined for none (renewals' answers fed to `renewed` by hand). */
    queue: Omit<RenewedQueue, 'onReport'> | undefined,
    private readonly logger: Logger,
  ) {
    this.renewal = queue && LockRenewal.open({ ...queue, onReport: (r) => this.report(r) });
  }

  /** A take with this token is about to be sent: until `taken`, its jobs are renewed by their token. */
  taking(token: string): void {
    this.takes.add(token);
    this.changed();
  }

  /** The take's answer is here (its jobs held, or none), or it failed. */
  taken(token: string): void {
    if (this.takes.delete(token)) this.changed();
  }

  /**
   * Every take whose token starts with `prefix` counts as in flight, for good: for a BullMQ Worker,
   * which takes its next job itself when a run ends (its tokens are `<worker id>:<n>`).
   */
  takingAll(prefix: string): void {
    this.takers.add(prefix);
    this.changed();
  }

  hold(id: string, token: string): void {
    this.held.set(id, token);
    this.changed();
  }

  release(id: string): void {
    if (!this.held.delete(id)) return;
    this.failures.delete(id);
    this.changed();
  }

  get size(): number {
    return this.held.size;
  }

  private changed(): void {
    if (this.stopped || this.dirty) return;
    this.dirty = true;
    queueMicrotask(() => {
      this.dirty = false;
      if (!this.stopped) this.renewal?.held.write(this.held, this.takes, this.takers);
    });
  }

  /** A renewal's answer: `ids` it tried, of which `failed` were not renewed. */
  renewed(ids: readonly string[], failed: readonly string[]): void {
    const lost = new Set(failed);
    for (const id of ids) {
      // A job released while the renewal was in flight was finished, not lost.
      if (!this.held.has(id)) continue;
      if (!lost.has(id)) {
        this.failures.delete(id);
        continue;
      }
      const count = (this.failures.get(id) ?? 0) + 1;
      if (count === 2) this.logger.warn({ jobId: id }, 'lost the lock of a held job; another worker may run it again');
      this.failures.set(id, Math.min(count, 2));
    }
  }

  private report(r: RenewalReport): void {
    if (r.type === 'renewed') this.renewed(r.ids, r.failed);
    else if (r.type === 'error') this.logger.warn({ err: r.message, jobs: r.jobs }, 'lock renewal failed');
    else
      this.logger.error(
        { blockedMs: r.silentMs, jobs: r.jobs },
        'the event loop was blocked past WORKER_MAX_RUN_MS: stopped renewing the locks of the jobs held, so other workers take them back',
      );
  }

  stop(): void {
    this.stopped = true;
    this.held.clear();
    this.failures.clear();
    this.takes.clear();
    this.takers.clear();
    if (this.renewal) this.renewal.renewal.close(this.renewal.id);
  }
}
