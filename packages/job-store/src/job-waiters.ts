import type { Redis } from 'ioredis';

/**
 * Lets requests wait for a job to end without polling. One subscriber
 * connection per process listens on the job-ended channel; each waiter is a
 * local promise keyed by job id.
 *
 * A waiter must be registered BEFORE the caller reads the job's status, so an
 * end that happens between the read and the wait is not missed. Pub/sub can
 * still drop a message (the connection blips), so callers read the record
 * again when the wait ends, whether by event or by timeout.
 */
export class JobWaiters {
  private readonly waiters = new Map<string, Set<(ended?: Record<string, string>) => void>>();
  private started: Promise<void> | undefined;

  constructor(
    private readonly subscriber: Redis,
    private readonly channel: string,
  ) {}

  start(): Promise<void> {
    this.started ??= (async () => {
      this.subscriber.on('message', (channel: string, message: string) => {
        if (channel !== this.channel) return;
        const newline = message.indexOf('\n');
        const id = newline === -1 ? message : message.slice(0, newline);
        const set = this.waiters.get(id);
        if (!set) return; // not ours: skip the parse
        this.waiters.delete(id);
        const ended = newline === -1 ? undefined : flatToHash(JSON.parse(message.slice(newline + 1)) as string[]);
        for (const wake of set) wake(ended);
      });
      await this.subscriber.subscribe(this.channel);
    })();
    return this.started;
  }

  /**
   * Register interest in `id`. `promise` resolves when the job ends (with
   * the ended record's hash, as published), the timeout passes or `cancel()`
   * is called (the client went away): then with undefined.
   */
  register(id: string, timeoutMs: number): { promise: Promise<Record<string, string> | undefined>; cancel: () => void } {
    let wake!: (ended?: Record<string, string>) => void;
    const promise = new Promise<Record<string, string> | undefined>((resolve) => (wake = resolve));
    const timer = setTimeout(() => done(), timeoutMs);
    const done = (ended?: Record<string, string>): void => {
      clearTimeout(timer);
      const current = this.waiters.get(id);
      current?.delete(done);
      if (current && current.size === 0) this.waiters.delete(id);
      wake(ended);
    };
    let set = this.waiters.get(id);
    if (!set) this.waiters.set(id, (set = new Set()));
    set.add(done);
    return { promise, cancel: done };
  }

  /** Number of requests waiting, for metrics and leak checks in tests. */
  get size(): number {
    let n = 0;
    for (const s of this.waiters.values()) n += s.size;
    return n;
  }

  async close(): Promise<void> {
    for (const set of this.waiters.values()) for (const wake of set) wake();
    this.waiters.clear();
  }
}

/** Redis's HGETALL as Lua returns it, [field, value, ...], as an object. */
function flatToHash(flat: string[]): Record<string, string> {
  const hash: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) hash[flat[i]!] = flat[i + 1]!;
  return hash;
}
