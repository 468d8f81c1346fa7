import { systemClock, type Clock } from './clock.js';

export interface MicroBatcherOptions<I, O> {
  /** Flush as soon as the pending items weigh this much (see `weigh`; with its default, this many items). */
  maxBatchSize: number;
  /** Flush at most this long after the first pending item arrived. */
  maxWaitMs: number;
  /**
   * Batches that may run at once. 2 lets the next batch be gathered and
   * decoded while the previous one is inside ONNX Runtime.
   * @default 2
   */
  maxInFlight?: number;
  /** Runs one batch; resolves with exactly one result per item, in order. */
  run: (items: I[]) => Promise<O[]>;
  /**
   * How much of a batch an item fills (e.g. the instances of an envelope
   * slice). `maxBatchSize` and `room` count in this unit; an item never
   * weighs more than `maxBatchSize` (the caller splits bigger ones).
   * @default every item weighs 1
   */
  weigh?: (item: I) => number;
  clock?: Clock;
}

interface Pending<I, O> {
  item: I;
  weight: number;
  resolve: (value: O) => void;
  reject: (err: unknown) => void;
}

/**
 * Gathers items into batches for one model version.
 *
 * States:
 *   empty ──add──▶ collecting (timer armed: maxWaitMs from the first item)
 *   collecting ──(maxBatchSize reached | timer fired | drained() | close())──▶ due
 *   due ──(fewer than maxInFlight batches running)──▶ running; back to empty
 * A due batch that finds every run slot busy stays pending until a run ends
 * (it keeps accepting items up to maxBatchSize meanwhile), so a slow model
 * slows the caller through `whenRoom()` instead of piling up batches.
 *
 * `add` resolves or rejects with that item's own result; if `run` throws,
 * every item of that batch rejects with the error.
 */
export class MicroBatcher<I, O> {
  private readonly maxBatchSize: number;
  private readonly maxWaitMs: number;
  private readonly maxInFlight: number;
  private readonly run: (items: I[]) => Promise<O[]>;
  private readonly weigh: (item: I) => number;
  private readonly clock: Clock;

  private pending: Pending<I, O>[] = [];
  /** Total weight of `pending`. */
  private weight = 0;
  private timer: unknown = undefined;
  private due = false;
  private inFlight = new Set<Promise<void>>();
  private roomWaiters: Array<() => void> = [];
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(options: MicroBatcherOptions<I, O>) {
    if (!(options.maxBatchSize >= 1)) throw new Error('maxBatchSize must be at least 1');
    this.maxBatchSize = options.maxBatchSize;
    this.maxWaitMs = Math.max(0, options.maxWaitMs);
    this.maxInFlight = Math.max(1, options.maxInFlight ?? 2);
    this.run = options.run;
    this.weigh = options.weigh ?? (() => 1);
    this.clock = options.clock ?? systemClock;
  }

  /** Items waiting for a batch (not counting batches already running). */
  get size(): number {
    return this.pending.length;
  }

  /** Weight `add` can take before the pending batch is full. */
  get room(): number {
    return Math.max(0, this.maxBatchSize - this.weight);
  }

  /** Batches now running. */
  get running(): number {
    return this.inFlight.size;
  }

  add(item: I): Promise<O> {
    if (this.closed) return Promise.reject(new Error('batcher is closed'));
    return new Promise<O>((resolve, reject) => {
      const weight = this.weigh(item);
      this.pending.push({ item, weight, resolve, reject });
      this.weight += weight;
      if (this.pending.length === 1) {
        this.timer = this.clock.setTimeout(() => this.markDue(), this.maxWaitMs);
      }
      if (this.weight >= this.maxBatchSize) this.markDue();
    });
  }

  /** The source has nothing more waiting: flush what is pending now. */
  drained(): void {
    if (this.pending.length > 0) this.markDue();
  }

  /** Resolves when another `add` would not overfill the pending batch. */
  whenRoom(): Promise<void> {
    if (this.weight < this.maxBatchSize) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** Stop taking items, flush what is pending, and wait for every running batch. */
  close(): Promise<void> {
    this.closed = true;
    this.closing ??= (async () => {
      this.markDue();
      // A flush may have to wait for a run slot, so loop until all is done.
      while (this.pending.length > 0 || this.inFlight.size > 0) {
        await Promise.race(this.inFlight);
      }
    })();
    return this.closing;
  }

  private markDue(): void {
    this.due = true;
    this.dispatch();
  }

  private dispatch(): void {
    while (this.due && this.pending.length > 0 && this.inFlight.size < this.maxInFlight) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
      const batch = this.takeBatch();
      this.due = this.closed || this.weight >= this.maxBatchSize;
      if (this.pending.length > 0 && !this.due) {
        // Leftovers start a new collecting window of their own.
        this.timer = this.clock.setTimeout(() => this.markDue(), this.maxWaitMs);
      }
      const running: Promise<void> = this.execute(batch).finally(() => {
        this.inFlight.delete(running);
        this.dispatch();
      });
      this.inFlight.add(running);
      this.wakeRoomWaiters();
    }
    if (this.pending.length === 0) this.due = false;
  }

  /** The oldest pending items up to `maxBatchSize` of weight (at least one). */
  private takeBatch(): Pending<I, O>[] {
    let n = 0;
    let w = 0;
    while (n < this.pending.length && (n === 0 || w + this.pending[n]!.weight <= this.maxBatchSize)) w += this.pending[n++]!.weight;
    this.weight -= w;
    return this.pending.splice(0, n);
  }

  private async execute(batch: Pending<I, O>[]): Promise<void> {
    try {
      const results = await this.run(batch.map((p) => p.item));
      if (results.length !== batch.length) {
        throw new Error(`batch run returned ${results.length} results for ${batch.length} items`);
      }
      batch.forEach((p, i) => p.resolve(results[i]!));
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }

  private wakeRoomWaiters(): void {
    if (this.weight >= this.maxBatchSize) return;
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of waiters) w();
  }
}
