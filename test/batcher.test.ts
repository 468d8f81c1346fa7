import { expect } from 'chai';
import { MicroBatcher, type Clock } from '@infer/batcher';

/** A clock that moves only when the test says so. */
class ManualClock implements Clock {
  private t = 0;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Timers armed and not yet fired or cleared. */
  get armed(): number {
    return this.timers.size;
  }

  /** Move time forward, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const target = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.timers) if (entry[1].at <= target && (!next || entry[1].at < next[1].at)) next = entry;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = target;
  }
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}
function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Let pending promise callbacks run. */
const settle = () => new Promise<void>((r) => setImmediate(r));

/** A batcher whose runs the test records and finishes by hand. */
function harness(options: { maxBatchSize: number; maxWaitMs: number; maxInFlight?: number }) {
  const clock = new ManualClock();
  const runs: Array<{ items: number[]; done: Deferred<string[]> }> = [];
  const batcher = new MicroBatcher<number, string>({
    ...options,
    clock,
    run: (items) => {
      const done = deferred<string[]>();
      runs.push({ items: [...items], done });
      return done.promise;
    },
  });
  /** Finish run i with one result per item. */
  const finish = (i: number) => runs[i]!.done.resolve(runs[i]!.items.map((n) => `r${n}`));
  return { clock, runs, batcher, finish };
}

describe('batcher: MicroBatcher', () => {
  it('flushes as soon as maxBatchSize items are pending, without waiting for the clock', async () => {
    const { clock, runs, batcher, finish } = harness({ maxBatchSize: 3, maxWaitMs: 1000 });
    const results = [1, 2, 3, 4].map((n) => batcher.add(n));
    expect(runs.map((r) => r.items)).to.deep.equal([[1, 2, 3]]);
    expect(batcher.size).to.equal(1);
    finish(0);
    expect(await Promise.all(results.slice(0, 3))).to.deep.equal(['r1', 'r2', 'r3']);
    // The fourth item has a window of its own.
    expect(clock.armed).to.equal(1);
    clock.advance(1000);
    expect(runs.map((r) => r.items)).to.deep.equal([[1, 2, 3], [4]]);
    finish(1);
    expect(await results[3]).to.equal('r4');
  });

  it('flushes maxWaitMs after the first pending item, not before', async () => {
    const { clock, runs, batcher, finish } = harness({ maxBatchSize: 10, maxWaitMs: 20 });
    const a = batcher.add(1);
    clock.advance(15);
    const b = batcher.add(2);
    clock.advance(4);
    expect(runs).to.have.length(0);
    clock.advance(1);
    expect(runs.map((r) => r.items)).to.deep.equal([[1, 2]]);
    finish(0);
    expect(await Promise.all([a, b])).to.deep.equal(['r1', 'r2']);
    expect(clock.armed).to.equal(0);
  });

  it('drained() flushes what is pending at once; with nothing pending it does nothing', async () => {
    const { clock, runs, batcher, finish } = harness({ maxBatchSize: 10, maxWaitMs: 5000 });
    batcher.drained();
    expect(runs).to.have.length(0);
    const a = batcher.add(7);
    batcher.drained();
    expect(runs.map((r) => r.items)).to.deep.equal([[7]]);
    // Its timer is cleared: nothing fires later.
    expect(clock.armed).to.equal(0);
    clock.advance(10_000);
    expect(runs).to.have.length(1);
    finish(0);
    expect(await a).to.equal('r7');
  });

  it('gives each item its own result, in order', async () => {
    const clock = new ManualClock();
    const batcher = new MicroBatcher<number, number>({ maxBatchSize: 5, maxWaitMs: 10, clock, run: async (items) => items.map((n) => n * 10) });
    const results = [3, 1, 4, 1, 5].map((n) => batcher.add(n));
    expect(await Promise.all(results)).to.deep.equal([30, 10, 40, 10, 50]);
  });

  it('rejects every item of a batch whose run throws, and only that batch', async () => {
    const clock = new ManualClock();
    const batcher = new MicroBatcher<number, number>({
      maxBatchSize: 2,
      maxWaitMs: 10,
      clock,
      run: async (items) => {
        if (items.includes(13)) throw new Error('model exploded');
        return items;
      },
    });
    const results = [12, 13, 14, 15].map((n) => batcher.add(n));
    const settled = await Promise.allSettled(results);
    expect(settled.map((s) => s.status)).to.deep.equal(['rejected', 'rejected', 'fulfilled', 'fulfilled']);
    for (const s of settled.slice(0, 2)) expect((s as PromiseRejectedResult).reason).to.have.property('message', 'model exploded');
  });

  it('rejects every item when run returns the wrong number of results', async () => {
    const clock = new ManualClock();
    const batcher = new MicroBatcher<number, number>({ maxBatchSize: 3, maxWaitMs: 10, clock, run: async (items) => items.slice(1) });
    const settled = await Promise.allSettled([1, 2, 3].map((n) => batcher.add(n)));
    expect(settled.every((s) => s.status === 'rejected')).to.equal(true);
  });

  it('runs at most maxInFlight batches at once; a due batch waits for a slot', async () => {
    const { clock, runs, batcher, finish } = harness({ maxBatchSize: 2, maxWaitMs: 10, maxInFlight: 2 });
    const results = [1, 2, 3, 4, 5, 6, 7].map((n) => batcher.add(n));
    expect(runs.map((r) => r.items)).to.deep.equal([
      [1, 2],
      [3, 4],
    ]);
    expect(batcher.running).to.equal(2);
    expect(batcher.size).to.equal(3);
    // The item left over is due by time too, but there is still no slot.
    clock.advance(100);
    expect(runs).to.have.length(2);
    finish(0);
    await settle();
    expect(runs.map((r) => r.items)).to.deep.equal([
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    expect(batcher.running).to.equal(2);
    finish(1);
    await settle();
    // The leftover starts a collecting window of its own (more may join it), bounded by maxWaitMs.
    expect(runs).to.have.length(3);
    clock.advance(10);
    expect(runs.map((r) => r.items)).to.deep.equal([[1, 2], [3, 4], [5, 6], [7]]);
    finish(2);
    finish(3);
    expect(await Promise.all(results)).to.deep.equal(['r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7']);
    expect(batcher.running).to.equal(0);
  });

  it('whenRoom() resolves at once while there is room, and after a flush once the pending batch is full', async () => {
    const { runs, batcher, finish } = harness({ maxBatchSize: 2, maxWaitMs: 10, maxInFlight: 1 });
    let roomed = false;
    await batcher.whenRoom();
    void batcher.add(1);
    void batcher.add(2); // runs at once
    void batcher.add(3);
    void batcher.add(4); // full, but the only slot is busy
    const room = batcher.whenRoom().then(() => (roomed = true));
    await settle();
    expect(roomed).to.equal(false);
    finish(0);
    await room;
    expect(runs.map((r) => r.items)).to.deep.equal([
      [1, 2],
      [3, 4],
    ]);
    finish(1);
  });

  it('close() flushes what is pending, waits for running batches, and refuses new items', async () => {
    const { clock, runs, batcher, finish } = harness({ maxBatchSize: 10, maxWaitMs: 1000 });
    const a = batcher.add(1);
    const b = batcher.add(2);
    let closed = false;
    const closing = batcher.close().then(() => (closed = true));
    expect(runs.map((r) => r.items)).to.deep.equal([[1, 2]]);
    expect(clock.armed).to.equal(0);
    await settle();
    expect(closed, 'close() resolved before the running batch finished').to.equal(false);
    finish(0);
    await closing;
    expect(await Promise.all([a, b])).to.deep.equal(['r1', 'r2']);
    await batcher.add(3).then(
      () => expect.fail('add after close resolved'),
      (err: Error) => expect(err.message).to.match(/closed/),
    );
    // Idempotent.
    await batcher.close();
  });

  it('close() with more pending than one batch and busy slots still runs everything', async () => {
    const { runs, batcher, finish } = harness({ maxBatchSize: 2, maxWaitMs: 1000, maxInFlight: 1 });
    const results = [1, 2, 3, 4, 5].map((n) => batcher.add(n));
    const closing = batcher.close();
    for (let i = 0; i < 3; i++) {
      await settle();
      finish(i);
    }
    await closing;
    expect(runs.map((r) => r.items)).to.deep.equal([[1, 2], [3, 4], [5]]);
    expect(await Promise.all(results)).to.deep.equal(['r1', 'r2', 'r3', 'r4', 'r5']);
  });
});
