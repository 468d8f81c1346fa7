import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { jobKeys, keys } from '@infer/contract';
import { READS_BY_NAME_SUFFIX } from './scripts.js';

/**
 * Lets requests wait for a job to end without polling. Each gateway has a
 * channel of its own (`channel`); a worker sends there, in one message per
 * micro-batch, the ended records (or, past what one message carries, the
 * ids alone) of exactly the jobs this gateway's requests wait for: those submitted here with `Prefer: wait`, and those a long poll
 * here registered on (JobStore.read with this channel). Nothing is sent for
 * jobs nobody waits for, and no gateway receives another's results.
 *
 * A waiter must be registered BEFORE the job can end (before the enqueue,
 * or in the same step as the read), so an end cannot slip between. Pub/sub
 * drops what is sent while the subscriber is reconnecting: once it is
 * subscribed again, the jobs still waited for are read (`commands`), and
 * those that ended meanwhile are delivered from their records. Callers read
 * the job again when a wait times out all the same.
 */
export class JobWaiters {
  /** This gateway's channel: where workers send the records its requests wait for. */
  readonly channel: string;
  private readonly waiters = new Map<string, Set<(record?: Buffer) => void>>();
  private started: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly subscriber: Redis,
    private readonly prefix: string,
    /** A command connection, to read the records of jobs that ended while the subscriber was away. */
    private readonly commands?: Redis,
  ) {
    // base64url has no '.': only the suffix says this gateway reads jobs a message names without their records.
    this.channel = keys(prefix).gatewayChannel(randomBytes(9).toString('base64url') + READS_BY_NAME_SUFFIX);
  }

  start(): Promise<void> {
    this.started ??= (async () => {
      this.subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => {
        if (channel.toString() === this.channel) this.deliver(message);
      });
      await this.subscriber.subscribe(this.channel);
      // Every 'ready' after the first is a reconnect (ioredis subscribes again by itself).
      this.subscriber.on('ready', () => void this.caughtUp());
    })();
    return this.started;
  }

  /**
   * After a reconnect: subscribed again (confirmed, so an end from now on
   * is sent here), read the records of the jobs still waited for, and
   * deliver those that ended while nothing was listening.
   */
  private async caughtUp(): Promise<void> {
    if (!this.commands || this.closed) return;
    try {
      await this.subscriber.subscribe(this.channel);
      const ids = [...this.waiters.keys()];
      for (let from = 0; from < ids.length; from += 500) {
        const slice = ids.slice(from, from + 500);
        const records = await Promise.all(slice.map((id) => this.commands!.getBuffer(jobKeys(this.prefix, id).record)));
        slice.forEach((id, i) => {
          const record = records[i];
          if (record) this.wake(id, record);
        });
      }
    } catch {
      // Redis went again: the next reconnect looks again, and every wait still ends by its timeout.
    }
  }

  /** Wake the waiters of `id` with its record, or with none for them to read it. */
  private wake(id: string, record: Buffer | undefined): void {
    const set = this.waiters.get(id);
    if (!set) return;
    this.waiters.delete(id);
    for (const wake of set) wake(record);
  }

  /**
   * A message is frames of "<job id> <record length>\n<record>". A length of
   * 0 names a job that ended without its record (past what one message
   * carries: MESSAGE_RECORD_BYTES): its waiters read it.
   */
  private deliver(message: Buffer): void {
    let at = 0;
    while (at < message.length) {
      const space = message.indexOf(0x20, at);
      const newline = message.indexOf(0x0a, space);
      if (space < 0 || newline < 0) return;
      const id = message.toString('latin1', at, space);
      const length = Number(message.toString('latin1', space + 1, newline));
      const record = message.subarray(newline + 1, newline + 1 + length);
      at = newline + 1 + length;
      this.wake(id, length > 0 ? record : undefined);
    }
  }

  /**
   * Register interest in `id`. `promise` resolves with the ended record when
   * the job ends, or with undefined when the timeout passes, `cancel()` is
   * called (the client went away), or the job ended and its message named it
   * without its record: on undefined, the caller reads the job.
   */
  register(id: string, timeoutMs: number): { promise: Promise<Buffer | undefined>; cancel: () => void } {
    // A closing gateway has woken every waiter and waits for their answers: one registered now must not hold it.
    if (this.closed) return { promise: Promise.resolve(undefined), cancel: () => undefined };
    let wake!: (record?: Buffer) => void;
    const promise = new Promise<Buffer | undefined>((resolve) => (wake = resolve));
    const timer = setTimeout(() => done(), timeoutMs);
    const done = (record?: Buffer): void => {
      clearTimeout(timer);
      const current = this.waiters.get(id);
      current?.delete(done);
      if (current && current.size === 0) this.waiters.delete(id);
      wake(record);
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

  /** Wake every waiter (each request then reads its job and answers), and let later ones wait for nothing. */
  async close(): Promise<void> {
    this.closed = true;
    for (const set of this.waiters.values()) for (const wake of set) wake();
    this.waiters.clear();
  }
}
