/**
 * Forwarding a caller's AbortSignal to each request's own AbortController.
 *
 * Not `AbortSignal.any([callerSignal, own])`: on Node 20 every signal `any`
 * makes stays in the caller's signal for as long as that lives
 * (nodejs/node#55351), an entry per call on the app-wide shutdown signal a
 * long-running client passes to each call. Nor a listener per call: past
 * ten calls in flight on one signal Node warns of a leak. So each caller
 * signal gets one listener, which aborts the controllers linked to it now.
 */
const linked = new WeakMap<AbortSignal, Set<AbortController>>();

/** Abort `controller` when `signal` aborts (at once if it has), until the returned function unlinks them. */
export function linkAbort(signal: AbortSignal | undefined, controller: AbortController): () => void {
  if (!signal) return () => undefined;
  if (signal.aborted) {
    controller.abort(signal.reason);
    return () => undefined;
  }
  let controllers = linked.get(signal);
  if (!controllers) {
    const set = new Set<AbortController>();
    controllers = set;
    linked.set(signal, set);
    signal.addEventListener(
      'abort',
      () => {
        linked.delete(signal);
        for (const c of set) c.abort(signal.reason);
      },
      { once: true },
    );
  }
  controllers.add(controller);
  return () => {
    controllers.delete(controller);
  };
}
