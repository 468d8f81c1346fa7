import { ConfigError, loadConfig, type Config } from '@infer/config';
import { createLogger, type Logger } from '@infer/logger';
import { ShutdownSignals } from './shutdown-signals.js';
import { tellSupervisor } from './supervisor-notes.js';

export { ShutdownSignals, type SignalAction, type SignalDecision } from './shutdown-signals.js';
export { isSupervisorNote, tellSupervisor, type SupervisorNote } from './supervisor-notes.js';

export interface RunProcessOptions {
  /** The logger's name: gateway, worker. */
  name: string;
  /** Build and start the process; what it returns is closed on SIGTERM/SIGINT. `port`: the one it listens on, told to a supervisor. */
  start: (config: Config, logger: Logger) => Promise<{ close(): Promise<void>; readonly port?: number }>;
  /** How long a graceful shutdown may take before the process exits anyway. */
  shutdownDeadlineMs: number;
  /** Logged when a signal arrives, to say what the shutdown waits for. */
  shuttingDownMessage?: string;
}

/**
 * The edge of every app process, and the only place signals are handled:
 * read the config once (a bad value exits 2 naming every bad variable),
 * start, and on SIGTERM/SIGINT close gracefully within a deadline.
 *
 * Signals during the shutdown follow ShutdownSignals: one less than
 * SHUTDOWN_FORCE_GRACE_MS (2 s) after the first is a duplicate of the same
 * request (a process-group signal plus a wrapper's relay of it) and is only
 * logged; one after that forces an exit. Exit codes: 0 once the app has
 * closed; 1 when closing failed, the deadline passed, or a late second
 * signal forced it. Before `start` resolves a signal ends the process at
 * once, as its default action would: nothing is in hand yet. (A process
 * that is PID 1, in a container run without an init, gets a handler that
 * exits for that: the kernel drops a signal PID 1 has no handler for, and
 * the container would wait out its stop timeout while the worker waits for
 * Redis or loads its models.) A parent that opened an IPC channel (`npm
 * start`) is told when the app is ready and when it begins stopping, so that
 * it restarts only an app that crashed (see supervisor-notes.ts).
 */
export function runProcess(options: RunProcessOptions): void {
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    console.error(err instanceof ConfigError ? err.message : err);
    process.exit(2);
  }
  const logger = createLogger({ level: config.logLevel, name: options.name });
  // An IPC channel from a parent must not keep the app alive once it has closed.
  const supervised = process.channel !== undefined;
  process.channel?.unref();
  const whileStarting = process.pid === 1 ? exitOnSignal(logger) : undefined;
  options.start(config, logger).then(
    (app) => {
      whileStarting?.();
      const stop = handleSignals(app, logger, options, new ShutdownSignals(config.shutdownForceGraceMs));
      if (supervised) stopWithSupervisor(stop, logger);
      tellSupervisor(app.port === undefined ? { app: 'ready' } : { app: 'ready', port: app.port });
      // Started, and stopping gracefully on a signal from here on (npm start restarts a crash from here on too).
      logger.info('ready');
    },
    (err: unknown) => {
      logger.fatal({ err }, `${options.name} failed to start`);
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    },
  );
}

/** SIGTERM and SIGINT exit at once, with the status a shell gives a process they kill (128 + the signal's number); returns the undo. */
function exitOnSignal(logger: Logger): () => void {
  const exit = (signal: NodeJS.Signals) => {
    logger.info({ signal }, 'signalled while starting: exiting');
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.on('SIGTERM', exit);
  process.on('SIGINT', exit);
  return () => {
    process.off('SIGTERM', exit);
    process.off('SIGINT', exit);
  };
}

/** How often a stopping process stamps its event loop's turns (see handleSignals). */
const TURN_STAMP_MS = 100;

/**
 * A supervisor that opened an IPC channel (`npm start`) and is gone without
 * stopping the app (killed with SIGKILL, which it cannot handle) would leave
 * it running with nobody to stop it: its channel closing stops the app as a
 * SIGTERM would. Also when it closed while the app was starting.
 */
function stopWithSupervisor(stop: (signal: NodeJS.Signals, cause?: string) => void, logger: Logger): void {
  const gone = () => {
    logger.warn('the process that started this one is gone (its IPC channel closed): stopping');
    stop('SIGTERM', 'supervisor gone');
  };
  if (!process.connected) gone();
  else process.once('disconnect', gone);
}

/** Handle SIGTERM and SIGINT; returns the handler, for stops that are not signals. */
function handleSignals(
  app: { close(): Promise<void> },
  logger: Logger,
  options: RunProcessOptions,
  signals: ShutdownSignals,
): (signal: NodeJS.Signals, cause?: string) => void {
  const graceS = signals.forceGraceMs / 1000;
  // `process.on`, not `once`: with `once` a duplicate signal found no listener and
  // took its default action, killing the process in the middle of its shutdown.
  // Nor are they removed once the app has closed: process.exit takes tens of
  // milliseconds (it stops worker threads), and a duplicate arriving then would
  // find no listener and kill the exiting process (seen under `npm start`, the
  // gateway killed by start.ts's SIGTERM after its own SIGINT). They go with it.
  // From the first signal on, the event loop's turns are stamped. A stamp that comes late finds the loop
  // was blocked (a model run) since the previous one; a signal handled just after that (timers run before
  // signals in a turn of the loop) waited behind the block, and may have arrived as early as its start.
  let lastStamp = 0;
  let block: { from: number; to: number } | undefined;
  let stamps: NodeJS.Timeout | undefined;
  const stamp = () => {
    const now = performance.now();
    if (now - lastStamp > 2 * TURN_STAMP_MS) block = { from: lastStamp, to: now };
    lastStamp = now;
  };
  const onSignal = (signal: NodeJS.Signals, cause?: string) => {
    stamp();
    const now = performance.now();
    const waited = block !== undefined && now - block.to < TURN_STAMP_MS;
    const { action, sinceFirstMs } = signals.receive(waited ? block!.from : now);
    if (!stamps) {
      block = undefined;
      stamps = setInterval(stamp, TURN_STAMP_MS);
      stamps.unref();
    }
    const since = Math.round(sinceFirstMs);
    if (action === 'ignore') {
      logger.info({ signal, sinceFirstMs: since }, `already shutting down; a signal ${graceS} s or more after the first forces an exit`);
      return;
    }
    if (action === 'force') {
      logger.error({ signal, sinceFirstMs: since }, 'signalled again after the grace period: forced exit, without finishing the shutdown');
      process.exit(1);
    }
    logger.info(cause ? { cause } : { signal }, options.shuttingDownMessage ?? 'shutting down');
    tellSupervisor({ app: 'stopping' });
    const deadline = setTimeout(() => {
      logger.error(`shutdown took longer than ${options.shutdownDeadlineMs / 1000} s; exiting`);
      process.exit(1);
    }, options.shutdownDeadlineMs);
    deadline.unref();
    app.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  // Node calls a signal's listeners with (name, number): the number is no cause.
  process.on('SIGTERM', (signal: NodeJS.Signals) => onSignal(signal));
  process.on('SIGINT', (signal: NodeJS.Signals) => onSignal(signal));
  return onSignal;
}

/**
 * Run shutdown steps in order, every one of them even if an earlier one
 * fails (a failed step is reported, not thrown): stop taking work, drain,
 * close queues, quit Redis.
 */
export async function closeInOrder(steps: ReadonlyArray<() => unknown>, onError: (err: unknown) => void): Promise<void> {
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      onError(err);
    }
  }
}

/**
 * Wait for `promise`, but no longer than `ms`: a bounded wait in a close
 * step or a yield. Rejects if `promise` rejects first; its timer is cleared
 * either way, so it never holds a process open.
 */
export async function awaitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** What `letGo` needs of a Redis connection (ioredis's Redis). */
export interface RedisLike {
  readonly status: string;
  quit(): Promise<unknown>;
  disconnect(): void;
}

/**
 * Close a Redis connection at shutdown: `quit()` while it is connected,
 * `disconnect()` otherwise. While Redis is away quit() fails (no offline
 * queue) or waits for a reconnect that may never come (with one), and the
 * client keeps reconnecting, so the process never exits.
 */
export async function letGo(conn: RedisLike): Promise<void> {
  if (conn.status === 'ready') await conn.quit().catch(() => conn.disconnect());
  else conn.disconnect();
}

/** What `blockingConnectionDown` needs of a BullMQ worker (its `Worker`). */
export interface BlockingWorker {
  readonly backend: { readonly blockingConnection?: { readonly client: Promise<{ readonly status: string }> } | undefined };
}

/**
 * Whether the connection a BullMQ worker blocks on is not connected now: not
 * yet connected, or between two reconnect attempts (Redis just came back and
 * it has not yet). Such a connection must be neither dropped nor closed
 * gracefully: ioredis, told to disconnect then, clears its retry timer
 * without a 'close' event and stays "reconnecting" for good, so what it
 * queued (a read, a QUIT) never settles and a wait for its 'end' never ends
 * (taskforcesh/bullmq#4656). A worker without one has nothing down.
 */
export async function blockingConnectionDown(worker: BlockingWorker): Promise<boolean> {
  const blocking = worker.backend.blockingConnection;
  if (!blocking) return false;
  // Its client is there once it first connected; one that never did has no socket either.
  const client = await Promise.race([blocking.client.catch(() => undefined), new Promise<undefined>((resolve) => setImmediate(() => resolve(undefined)))]);
  return client?.status !== 'ready';
}

/** What `assertDatabase` needs of a Redis connection (ioredis's Redis). */
export interface SelectingRedis {
  readonly options: { db?: number | undefined };
  select(db: number): Promise<unknown>;
}

/**
 * Make sure a connection is on the database REDIS_URL names. ioredis selects
 * it as it connects and, refused (a number past the server's `databases`),
 * only reports an error and goes on with database 0: a process would then
 * serve, and write, another deployment's database. Selecting it once more
 * throws that refusal instead, and the process does not start.
 */
export async function assertDatabase(conn: SelectingRedis): Promise<void> {
  const db = conn.options.db ?? 0;
  if (db === 0) return;
  try {
    await conn.select(db);
  } catch (err) {
    throw new Error(`REDIS_URL names database ${db}, which Redis refuses: ${(err as Error).message}`);
  }
}

/**
 * A listen that failed, said in the operator's terms: which variable to change (a port in use is the
 * likeliest: two workers on one machine, or `npm start` running already), or HOST for a name that
 * does not resolve. Anything else as it is.
 */
export function listenError(err: Error, portVariable: string, port: number, host: string): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') return new Error(`${portVariable} ${port} is in use on ${host} (another process listens there): set ${portVariable} to a free port${portVariable === 'WORKER_METRICS_PORT' ? ', or 0 for any free one' : ''}`, { cause: err });
  if (code === 'ENOTFOUND' || code === 'EADDRNOTAVAIL') return new Error(`HOST ${host} is not an address of this machine (${code}): set HOST to one, or 0.0.0.0 for all`, { cause: err });
  return err;
}

