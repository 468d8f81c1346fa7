import type { Logger } from '@infer/logger';

/** At most one warning this often per model version: a slow model runs every batch long. */
const WARN_EVERY_MS = 60_000;

/**
 * onnxruntime-node runs a model synchronously, holding the worker's event
 * loop for the whole run, so no lock is renewed while it goes on (LockKeeper
 * renews every WORKER_LOCK_MS / 2). A run longer than that can let the locks
 * of what this worker holds lapse; other workers' stalled checks then put
 * the work back and run it again, and work that stalls three times ends
 * `worker_lost` though no worker died. Told how long each run took, this
 * warns of one that came past half the lock, with what to do about it.
 */
export class LongRunWarning {
  private warnedAt = -Infinity;

  constructor(
    private readonly lockMs: number,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  observe(runs: ReadonlyArray<{ ms: number }>): void {
    let longest = 0;
    for (const r of runs) if (r.ms > longest) longest = r.ms;
    if (longest <= this.lockMs / 2 || this.now() - this.warnedAt < WARN_EVERY_MS) return;
    this.warnedAt = this.now();
    this.logger.warn(
      { runMs: Math.round(longest), lockMs: this.lockMs },
      'a model run held the event loop past half of WORKER_LOCK_MS: locks are not renewed during a run, so other workers may run this work again (and fail it worker_lost after three times); set WORKER_LOCK_MS above twice the longest run, or lower max_batch_size',
    );
  }
}
