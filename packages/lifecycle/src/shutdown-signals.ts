/**
 * What a SIGTERM or SIGINT means to a process, decided apart from the
 * process so it can be tested without real signals.
 *
 * One request to stop often arrives as several signals: `kill -TERM -<pgid>`
 * (a container runtime, a terminal's Ctrl-C) reaches every process of the
 * group, and a wrapper in that group (the tsx CLI, scripts/start.ts) relays the
 * signal it got to its child as well, so the app sees two or three within
 * milliseconds. Those are the same request, not an order to die mid-chunk.
 *
 * The rule:
 *  - the first SIGTERM or SIGINT starts the graceful shutdown (`shutdown`);
 *  - another one less than `forceGraceMs` after the first is ignored
 *    (`ignore`): duplicates of that request;
 *  - another one `forceGraceMs` or more after the first forces an exit
 *    (`force`): someone deliberately asked again, as a person pressing Ctrl-C
 *    a second time does.
 * SIGTERM and SIGINT count alike, and the grace is measured from the first
 * signal, not the latest, so a steady stream of duplicates still ends in a
 * forced exit once the grace has passed.
 *
 * A signal is handled when the event loop is free, and a worker's model run
 * holds it for as long as the run: a relay sent milliseconds after the first
 * signal may be handled seconds later. So a repeat is judged by the earliest
 * moment it may have arrived (the last free turn before it was handled).
 */
export type SignalAction = 'shutdown' | 'ignore' | 'force';

export interface SignalDecision {
  action: SignalAction;
  /** Milliseconds since the first signal (0 for the first). */
  sinceFirstMs: number;
}

export class ShutdownSignals {
  private firstAt: number | undefined;
  private readonly now: () => number;

  constructor(
    /** SHUTDOWN_FORCE_GRACE_MS (config.shutdownForceGraceMs). */
    readonly forceGraceMs: number,
    /** A monotonic clock in milliseconds (tests inject one). */
    now: () => number = () => performance.now(),
  ) {
    this.now = now;
  }

  /**
   * A SIGTERM or SIGINT is handled now: what to do with it. `arrivedAfter`: the earliest it may have
   * arrived, on the same clock (the last free turn of a blocked event loop); now when not given.
   */
  receive(arrivedAfter?: number): SignalDecision {
    const now = this.now();
    if (this.firstAt === undefined) {
      this.firstAt = now;
      return { action: 'shutdown', sinceFirstMs: 0 };
    }
    const sinceFirstMs = Math.min(now, arrivedAfter ?? now) - this.firstAt;
    return { action: sinceFirstMs >= this.forceGraceMs ? 'force' : 'ignore', sinceFirstMs };
  }
}
