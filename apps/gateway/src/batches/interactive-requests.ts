import type { ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';

/**
 * The gateway's half of "interactive first": counts the interactive
 * requests (`/v1/jobs`) this process is serving, so that reading a batch
 * upload can step aside while there are any. Parsing a large upload takes a
 * whole core; without this, every job request in the same gateway would wait
 * for the parser between each of its steps (auth, store, enqueue, respond).
 */
export class InteractiveRequests {
  private inFlight = 0;
  private waiters: Array<() => void> = [];
  /** How each counted request stops counting (once): its answer, or parking. */
  private readonly leave = new WeakMap<ServerResponse, () => void>();

  /** Middleware for the interactive routes. */
  readonly track: RequestHandler = (_req, res, next) => {
    this.count(res);
    next();
  };

  /** Count a request in flight until its response is finished or closed, or it is parked. */
  count(res: ServerResponse): void {
    this.inFlight++;
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      if (--this.inFlight > 0) return;
      const waiters = this.waiters;
      this.waiters = [];
      for (const wake of waiters) wake();
    };
    this.leave.set(res, end);
    res.once('finish', end);
    res.once('close', end);
  }

  /**
   * The request now only waits for its job to end (`Prefer: wait`, a long
   * poll), for up to a minute, using nothing meanwhile: it stops counting,
   * or one parked poll would hold every upload in this gateway to a crawl.
   * What is left when its job ends (an answer written) is too small to
   * count again.
   */
  park(res: ServerResponse): void {
    this.leave.get(res)?.();
  }

  get busy(): boolean {
    return this.inFlight > 0;
  }

  /** Resolves when no interactive request is in flight, or after `maxMs`, so bulk work slows down but never stops. */
  whenIdle(maxMs: number): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve();
      };
      const timer = setTimeout(done, maxMs);
      this.waiters.push(done);
    });
  }
}
