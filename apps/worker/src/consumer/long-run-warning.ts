import type { Logger } from '@infer/logger';

/** At most one warning this often per model version: a slow model runs every batch long. */
const WARN_EVERY_MS = 60_000;

/**
 * onnxruntime-node runs a model synchronously, holding the worker's event
 * loop for the whole run. The lock-renewal thread keeps the worker's locks
 * through a run, but only for WORKER_MAX_RUN_MS: past it the worker is
 * taken as hung, its locks lapse, and other workers run its work again
 * (work taken back three times ends `worker_lost`). Told how long each run
 * took, this warns of one that came past half of that bound, with what to
 * do about it, before runs that grow a little more start failing.
 */
export class LongRunWarning {
  private warnedAt = -Infinity;

  constructor(
    private readonly maxRunMs: number,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  observe(runs: ReadonlyArray<{ ms: number }>): void {
    let longest = 0;
    for (const r of runs) if (r.ms > longest) longest = r.ms;
    if (longest <= this.maxRunMs / 2 || this.now() - this.warnedAt < WARN_EVERY_MS) return;
    this.warnedAt = this.now();
    this.logger.warn(
      { runMs: Math.round(longest), maxRunMs: this.maxRunMs },
      'a model run held the event loop past half of WORKER_MAX_RUN_MS: a run past it is taken for a hang, and the work it holds goes to other workers (failed worker_lost after three times); set WORKER_MAX_RUN_MS above twice the longest run, or lower max_batch_size',
    );
  }
}
