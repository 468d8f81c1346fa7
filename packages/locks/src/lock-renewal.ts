import { Worker } from 'node:worker_threads';
import type { Redis } from 'ioredis';
import { mainThreadBeat } from './main-thread-beat.js';

/** Where the thread connects: the fields of the main connection's options that say which Redis, and as whom. */
export interface RedisTarget {
  host?: string;
  port?: number;
  path?: string;
  username?: string;
  password?: string;
  db?: number;
  family?: number;
  tls?: object;
}

/** What the thread reports about one consumer's locks. */
export type RenewalReport =
  | { type: 'renewed'; ids: string[]; failed: string[] }
  | { type: 'error'; message: string; jobs: number }
  | { type: 'hung'; silentMs: number; jobs: number };

export interface RenewedQueue {
  /** BullMQ's stalled set of the queue (`bull:…:stalled`). */
  stalledKey: string;
  /** BullMQ's active list of the queue: where the jobs of a take in flight are found by their token. */
  activeKey: string;
  /** The prefix of the queue's job keys: a job's lock is `<baseKey><id>:lock`. */
  baseKey: string;
  lockMs: number;
  maxRunMs: number;
  connection: Redis;
  onReport: (report: RenewalReport) => void;
}

/** WORKER_MAX_RUN_MS's default: SageMaker Async Inference's default invocation timeout. */
export const DEFAULT_MAX_RUN_MS = 15 * 60_000;

/** A thread that ends sooner than this after its start is started again this long after. */
const RESPAWN_AFTER_MS = 1000;
/**
 * Bytes a queue's held-jobs snapshot starts with: room for ~350 held jobs (an envelope id and a BullMQ
 * token are ~60 characters as JSON, counted 3 bytes each in the worst case of UTF-8); it grows when one
 * does not fit.
 */
const SNAPSHOT_BYTES = 64 * 1024;

/**
 * What one consumer holds, as the thread reads it: `{ held: [[id, token],
 * …], taking: [token, …], prefixes: [prefix, …] }` (the tokens of its
 * takes in flight, and token prefixes for takes it cannot see coming) as
 * JSON in shared memory, under a sequence lock (odd while being written).
 * Written on every change of the held set, at no more cost than the
 * encoding: no message, so the thread is not woken for each one (a
 * message per change, waking the thread each time, took 2.3% of an OCR
 * worker's profile).
 */
export class HeldSnapshot {
  private header: Int32Array;
  private bytes: Uint8Array;
  private readonly encoder = new TextEncoder();

  constructor(private readonly moved: (buffer: SharedArrayBuffer) => void) {
    const buffer = new SharedArrayBuffer(SNAPSHOT_BYTES);
    this.header = new Int32Array(buffer, 0, 2);
    this.bytes = new Uint8Array(buffer, 8);
  }

  get buffer(): SharedArrayBuffer {
    return this.header.buffer as SharedArrayBuffer;
  }

  write(held: ReadonlyMap<string, string>, taking: ReadonlySet<string>, prefixes: ReadonlySet<string>): void {
    const text = JSON.stringify({ held: [...held], taking: [...taking], prefixes: [...prefixes] });
    // UTF-8 takes at most 3 bytes a UTF-16 unit: grow before a write that might not fit.
    if (text.length * 3 > this.bytes.length) {
      const buffer = new SharedArrayBuffer(8 + Math.max(this.bytes.length * 2, text.length * 3));
      this.header = new Int32Array(buffer, 0, 2);
      this.bytes = new Uint8Array(buffer, 8);
      // Written before the thread hears of it: it never reads the new buffer empty.
      this.store(text);
      this.moved(buffer);
      return;
    }
    this.store(text);
  }

  private store(text: string): void {
    Atomics.add(this.header, 0, 1);
    const { written } = this.encoder.encodeInto(text, this.bytes);
    Atomics.store(this.header, 1, written);
    Atomics.add(this.header, 0, 1);
  }
}

/**
 * The one lock-renewal thread of a worker process, shared by its consumers.
 *
 * onnxruntime-node runs a model synchronously on the thread that calls it,
 * so a timer on the main thread cannot renew locks while a run goes on; a
 * run longer than the lock would let other workers take the work back and
 * run it again. The thread renews instead, on its own event loop and Redis
 * connection. What it must not do is keep the locks of a worker that hangs:
 * the main thread beats into shared memory (mainThreadBeat), and the thread
 * stops renewing once it has been silent past `maxRunMs` (WORKER_MAX_RUN_MS).
 *
 * Consumers open a queue on it, write what they hold into its HeldSnapshot
 * (once per turn that changes it, so before any run starts: onnxruntime-node
 * calls the model a turn after `session.run`), and close it; the thread ends
 * with the last one.
 */
export class LockRenewal {
  private static current: LockRenewal | undefined;

  private worker: Worker;
  private readonly beat = mainThreadBeat();
  private readonly queues = new Map<number, { queue: RenewedQueue; held: HeldSnapshot }>();
  private nextId = 1;
  private ended = false;
  private spawnedAt = 0;

  private constructor() {
    this.worker = this.spawn();
  }

  /** Open a consumer's queue on the process's thread (starting it if none runs); the id names it in later calls, the snapshot tells it what is held. */
  static open(queue: RenewedQueue): { renewal: LockRenewal; id: number; held: HeldSnapshot } {
    const renewal = (LockRenewal.current ??= new LockRenewal());
    const id = renewal.nextId++;
    const held = new HeldSnapshot((buffer) => renewal.worker.postMessage({ type: 'snapshot', queue: id, buffer }));
    renewal.queues.set(id, { queue, held });
    renewal.openOnThread(id);
    return { renewal, id, held };
  }

  /** Stop renewing a queue's locks; the last queue closed ends the thread. */
  close(id: number): void {
    if (!this.queues.delete(id)) return;
    this.worker.postMessage({ type: 'close', queue: id });
    if (this.queues.size > 0) return;
    if (LockRenewal.current === this) LockRenewal.current = undefined;
    this.ended = true;
    // Ending the thread closes its Redis connection with it.
    void this.worker.terminate();
  }

  /** The thread now running (tests stop it, to see it started again). */
  static get thread(): Worker | undefined {
    return LockRenewal.current?.worker;
  }

  private spawn(): Worker {
    this.spawnedAt = Date.now();
    // execArgv: [] — not tsx's loader: the thread is plain JavaScript and starts in milliseconds.
    const worker = new Worker(new URL('./lock-renewal-thread.mjs', import.meta.url), { workerData: { beat: this.beat }, execArgv: [] });
    worker.on('message', (m: RenewalReport & { queue: number }) => this.queues.get(m.queue)?.queue.onReport(m));
    worker.on('error', (err) => this.report(`the lock-renewal thread failed: ${err.message}`));
    // A thread that ended unasked (it threw, or was stopped) is started again, and told every queue and
    // snapshot as they are now: the snapshots live in shared memory, so nothing held is lost. One that
    // ends within a second of its start waits a second first, so a thread that cannot live does not spin.
    worker.on('exit', (code) => {
      if (this.ended || this.worker !== worker) return;
      const again = () => {
        if (this.ended || this.worker !== worker) return;
        this.worker = this.spawn();
        for (const id of this.queues.keys()) this.openOnThread(id);
      };
      this.report(`the lock-renewal thread stopped (exit code ${code}); started again`);
      if (Date.now() - this.spawnedAt >= RESPAWN_AFTER_MS) again();
      else setTimeout(again, RESPAWN_AFTER_MS).unref();
    });
    // Last: adding a 'message' listener refs the thread's port again, and the process must not wait for it.
    worker.unref();
    return worker;
  }

  private openOnThread(id: number): void {
    const { queue, held } = this.queues.get(id)!;
    this.worker.postMessage({
      type: 'open',
      queue: id,
      buffer: held.buffer,
      target: redisTarget(queue.connection),
      stalledKey: queue.stalledKey,
      activeKey: queue.activeKey,
      baseKey: queue.baseKey,
      lockMs: queue.lockMs,
      maxRunMs: queue.maxRunMs,
    });
  }

  private report(message: string): void {
    for (const { queue } of this.queues.values()) queue.onReport({ type: 'error', message, jobs: 0 });
  }
}

/** The connection options that pick the server and the login: what a structured clone can carry to the thread. */
function redisTarget(connection: Redis): RedisTarget {
  const o = connection.options;
  const target: RedisTarget = {};
  if (o.path) target.path = o.path;
  else {
    target.host = o.host;
    target.port = o.port;
  }
  if (o.username) target.username = o.username;
  if (o.password) target.password = o.password;
  if (o.db) target.db = o.db;
  if (o.family) target.family = o.family;
  if (o.tls) target.tls = o.tls;
  return target;
}
