/**
 * Mocha is set not to force an exit when the run ends (`exit: false`), so a
 * test that leaves a server, a timer or a Redis connection open shows up as a
 * run that does not end. That must not become a CI job that hangs until its
 * time limit and reports nothing: a while after the last test, if something
 * still holds the process open, say what and exit with failure.
 *
 * Loaded through `.mocharc.json`'s `require` (mocha calls the global teardown
 * once, after every test and hook has run, passed or failed).
 */

/** How long after the last test the process may take to let go of what it holds. */
const GRACE_MS = 60_000;

export function mochaGlobalTeardown(): void {
  // A bound, not a wait: nothing waits on it, and unref'd it never holds the process open itself; it fires only
  // if something else still does once the grace period is over.
  setTimeout(() => {
    const held = new Map<string, number>();
    for (const kind of process.getActiveResourcesInfo()) held.set(kind, (held.get(kind) ?? 0) + 1);
    const what = [...held].map(([kind, n]) => `${kind} ×${n}`).join(', ');
    console.error(`\nThe test run ended ${GRACE_MS / 1000} s ago and the process is still held open (${what}): a test or hook left something open. Exiting with failure.`);
    // Mocha's own 'exit' listener sets the exit code to the number of failed tests, which may be 0: this one runs after it.
    process.once('exit', () => {
      if (!process.exitCode) process.exitCode = 1;
    });
    process.exit(1);
  }, GRACE_MS).unref();
}
