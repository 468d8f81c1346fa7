/** How often the main thread says it is alive. */
export const BEAT_MS = 500;

let beat: BigInt64Array | undefined;

/**
 * When this process's main event loop last turned (ms since the epoch), in
 * shared memory, written every BEAT_MS by an unref'd timer started on first
 * use. Threads that must keep working while a model run holds the main
 * loop (lock renewal, the worker's probe server) read it to tell a long run
 * (silent, within WORKER_MAX_RUN_MS) from a hung worker (silent past it).
 */
export function mainThreadBeat(): BigInt64Array {
  if (!beat) {
    const shared = new BigInt64Array(new SharedArrayBuffer(8));
    Atomics.store(shared, 0, BigInt(Date.now()));
    setInterval(() => Atomics.store(shared, 0, BigInt(Date.now())), BEAT_MS).unref();
    beat = shared;
  }
  return beat;
}
