/**
 * Parse RFC 7240 `Prefer` for the `wait` preference: `wait` alone means the
 * longest wait allowed, `wait=N` N seconds (capped). Returns milliseconds, or
 * undefined when the client did not ask to wait.
 */
export function preferWaitMs(header: string | string[] | undefined, maxMs: number): number | undefined {
  if (!header) return undefined;
  const prefs = (Array.isArray(header) ? header.join(',') : header).split(',');
  for (const pref of prefs) {
    // No two unbounded runs of spaces side by side (`wait\s*` then `\s*` after an empty `=N`): on a long run
    // of spaces that does not match, such a pattern backtracks quadratically (15 KB: ~130 ms of the event loop).
    const m = /^\s*wait(?:\s*=\s*"?(\d+(?:\.\d+)?)"?)?\s*(?:;.*)?$/i.exec(pref);
    if (!m) continue;
    if (m[1] === undefined) return maxMs;
    return Math.min(Math.round(Number(m[1]) * 1000), maxMs);
  }
  return undefined;
}
