/** Poll `condition` until it is truthy; throw after `timeoutMs`. The only way tests wait on state they cannot subscribe to. */
export async function waitUntil<T>(condition: () => T | Promise<T>, timeoutMs = 10_000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let delay = 5;
  for (;;) {
    const value = await condition();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 100);
  }
}

/**
 * Let `ms` of real time pass (none when `ms` ≤ 0). Only for tests where the
 * passing of time is itself the thing under test: a deadline or a grace
 * period running out, nothing happening meanwhile, the pacing of a load. A
 * test waiting for state waits on that state (`waitUntil`, an event), never
 * on a guess of how long it takes. `why` says which time is under test.
 */
export async function elapse(ms: number, why: string): Promise<void> {
  if (!why.trim()) throw new Error('elapse: say why the passing of time is under test');
  if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Hold the event loop for `ms`, as onnxruntime-node does for a model run (it runs the model synchronously
 * on the thread that calls it). Not a wait for state: the blocked loop itself is what is under test.
 */
export function blockEventLoop(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
