/**
 * How often `npm start` restarts an app that crashed. As Docker's restart
 * policies do, the delay doubles from a short one; unlike them, a crash loop
 * ends: past `limit` restarts within `windowMs` it gives up, and `npm start`
 * stops with the crash's status instead of hiding it behind restarts. The
 * bound is loose enough for what a restart is there for: an input that
 * crashes ONNX Runtime costs two worker deaths at least `WORKER_LOCK_MS`
 * apart (the worker's locks lapse before another take finds the job).
 */
export class RestartBudget {
  /** When the restarts within the window were granted, oldest first. */
  private readonly granted: number[] = [];

  constructor(
    readonly limit = 5,
    readonly windowMs = 60_000,
    private readonly firstDelayMs = 250,
    private readonly maxDelayMs = 4_000,
  ) {}

  /** The delay before restarting after a crash at `now` (ms), or null when the budget is spent. */
  next(now: number): number | null {
    while (this.granted.length > 0 && now - this.granted[0]! >= this.windowMs) this.granted.shift();
    if (this.granted.length >= this.limit) return null;
    this.granted.push(now);
    return Math.min(this.firstDelayMs * 2 ** (this.granted.length - 1), this.maxDelayMs);
  }

  /** Restarts granted within the window ending at the last one. */
  get recent(): number {
    return this.granted.length;
  }
}
