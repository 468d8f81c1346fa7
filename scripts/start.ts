/**
 * `npm start`: one gateway and one worker on the default configuration, for a
 * newcomer's first run. Builds the shipped models if they are missing, makes
 * sure a Redis answers (starting a throwaway `redis-server` from the PATH when
 * REDIS_URL points at this machine and none is running), then runs both
 * processes until Ctrl-C, restarting one that crashes (within a bound).
 * Production runs the two apps on their own (`npm run start:gateway`,
 * `npm run start:worker`) under something that restarts them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { ConfigError, loadConfig } from '@infer/config';
import { isSupervisorNote } from '@infer/lifecycle';
import { buildModels } from './build-models.js';
import { RestartBudget } from './lib/restarts.js';

const root = path.resolve(import.meta.dirname, '..');

/**
 * The signals that stop `npm start`: Ctrl-C (SIGINT), a kill or a container
 * runtime (SIGTERM), and the terminal closing or an ssh session dropping
 * (SIGHUP), which would otherwise kill this process at once and leave the
 * throwaway redis-server (in a session of its own) running.
 */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** Undoes the handlers that stop the throwaway Redis before the apps run. */
const earlyHandlers: Array<() => void> = [];

async function redisAnswers(url: string): Promise<boolean> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null, connectTimeout: 1500 });
  client.on('error', () => {});
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => existsSync(path.join(dir, cmd)));
}

/** The URL as it may be printed: its password (`redis://:secret@host`) replaced. */
function shown(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}

async function ensureRedis(url: string, children: ChildProcess[]): Promise<void> {
  if (await redisAnswers(url)) return;
  const u = new URL(url);
  const local = ['127.0.0.1', 'localhost', '::1', '[::1]'].includes(u.hostname);
  if (!local || !onPath('redis-server')) {
    console.error(
      `No Redis answers at ${shown(url)}.\n` +
        `Start one, then run npm start again:\n` +
        `  - Debian/Ubuntu: sudo apt-get install redis-server   (it starts on 127.0.0.1:6379)\n` +
        `  - macOS:         brew install redis && brew services start redis\n` +
        `  - Docker:        docker run -d -p 6379:6379 redis:7\n` +
        `or point REDIS_URL at one you have.`,
    );
    process.exit(1);
  }
  const port = u.port || '6379';
  console.log(`No Redis at ${shown(url)}: starting redis-server on port ${port} for this session (nothing kept on disk).`);
  const redis = spawn('redis-server', ['--port', port, '--bind', u.hostname.replace(/^\[|\]$/g, ''), '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
    // A process group of its own, out of the terminal's reach: Ctrl-C would
    // stop it at once, while the apps still need it to finish their work
    // (a worker then waited out its 30 s deadline). It is stopped last, below.
    detached: true,
  });
  children.push(redis);
  // However this process ends (short of SIGKILL), the throwaway Redis goes with it: on exit, and on a
  // signal that comes before the apps run (once they do, main's handlers stop them first, then Redis).
  const stopRedis = () => {
    if (redis.exitCode === null && redis.signalCode === null) redis.kill('SIGTERM');
  };
  process.on('exit', stopRedis);
  const early = (signal: NodeJS.Signals) => {
    stopRedis();
    process.exit(128 + (os.constants.signals[signal] ?? 0));
  };
  for (const signal of STOP_SIGNALS) process.on(signal, early);
  earlyHandlers.push(() => {
    for (const signal of STOP_SIGNALS) process.off(signal, early);
  });
  for (let i = 0; i < 50 && !(await redisAnswers(url)); i++) await new Promise((r) => setTimeout(r, 100));
  if (!(await redisAnswers(url))) {
    console.error('redis-server did not come up; start Redis yourself and set REDIS_URL.');
    process.exit(1);
  }
}

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    console.error(err instanceof ConfigError ? err.message : err);
    process.exit(2);
  }
  const children: ChildProcess[] = [];
  if (path.resolve(config.modelRepository) === path.join(root, 'models') && !existsSync(path.join(root, 'models', 'mlp'))) {
    await buildModels({ out: path.join(root, 'models'), fixtures: path.join(root, 'test', 'fixtures', 'models') });
  }
  await ensureRedis(config.redisUrl, children);

  // Ctrl-C signals the whole process group: each app gets the terminal's SIGINT
  // and, a moment later, the SIGTERM this process passes on. The apps take
  // duplicates within SHUTDOWN_FORCE_GRACE_MS (2 s) of the first as one
  // request, so every signal is simply passed on: a Ctrl-C pressed again
  // after that forces them, whether it reached them directly or through here.
  // Listeners with `on`, not `once`: a repeated signal must never find this
  // process without one and kill it before the apps have finished.
  let stopping = false;
  /** The status this process ends with: that of the first app that ended for good with a failure. */
  let failure: number | undefined;
  const running = new Map<AppName, ChildProcess>();
  const restarts = new Map<AppName, RestartBudget>();
  const pendingRestarts = new Set<NodeJS.Timeout>();
  const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

  // Apps first (they finish their work), Redis last; exit non-zero if an app failed.
  const finishIfDone = () => {
    if (!stopping || pendingRestarts.size > 0 || [...running.values()].some(alive)) return;
    for (const c of children) if (alive(c)) c.kill('SIGTERM');
    process.exit(failure ?? 0);
  };
  const stopApps = () => {
    stopping = true;
    for (const t of pendingRestarts) clearTimeout(t);
    pendingRestarts.clear();
    for (const c of running.values()) if (alive(c)) c.kill('SIGTERM');
    finishIfDone();
  };

  // Said once the gateway listens, not before (a port already in use stops it with its own message instead),
  // with the port it listens on: the one PORT=0 picked.
  let announcedPort: number | undefined;
  const banner = (port: number) => `Gateway on http://localhost:${port} (API key: ${config.apiKeysAreDevDefault ? 'dev-key' : 'see API_KEYS'}); Ctrl-C stops everything.`;

  /**
   * Run an app with an IPC channel, on which it says when it is ready and when
   * it begins stopping (see @infer/lifecycle's supervisor notes). One that dies
   * after it was ready (or, restarted, once it had been: a restarted worker
   * takes work before it says so again), without having begun to stop and
   * not of a stop signal, crashed (a native crash such as an input that
   * makes ONNX Runtime trap, an uncaught error, the kernel's OOM killer) and
   * is restarted within its budget, as docker-compose's `restart:
   * unless-stopped` would. Its work is not lost either way: the locks it held
   * lapse and the restarted worker, or another, takes it again. Any other end
   * stops the other app and this process.
   */
  const run = (name: AppName, restarted: boolean) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'apps', name, 'src', 'main.ts')], {
      stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
      env: process.env,
    });
    running.set(name, child);
    let ready = false;
    let leaving = false;
    child.on('message', (message) => {
      if (!isSupervisorNote(message)) return;
      if (message.app === 'stopping') leaving = true;
      else {
        ready = true;
        if (name === 'gateway') {
          const port = message.port ?? config.port;
          // A gateway restarted on PORT=0 listens on another free port: say where, once it does.
          if (!restarted) console.log(banner(port));
          else if (port !== announcedPort) console.log(`The gateway was restarted: now on http://localhost:${port}`);
          announcedPort = port;
        }
      }
    });
    child.once('exit', (code, signal) => {
      const how = signal ? `signal ${signal}` : `exit code ${code}`;
      const stopSignal = signal !== null && (STOP_SIGNALS as readonly string[]).includes(signal);
      if ((ready || restarted) && !leaving && !stopping && code !== 0 && !stopSignal) {
        const budget = restarts.get(name) ?? new RestartBudget();
        restarts.set(name, budget);
        const delay = budget.next(Date.now());
        if (delay !== null) {
          console.log(`The ${name} died (${how}); restarting it in ${delay} ms (restart ${budget.recent} of at most ${budget.limit} within ${budget.windowMs / 1000} s).`);
          const timer = setTimeout(() => {
            pendingRestarts.delete(timer);
            if (stopping) finishIfDone();
            else run(name, true);
          }, delay);
          pendingRestarts.add(timer);
          return;
        }
        console.error(`The ${name} died (${how}) after ${budget.limit} restarts within ${budget.windowMs / 1000} s; giving up: stopping everything.`);
      }
      // An app that a stop signal ended while stopping (one still starting has no handler for it yet) did as asked.
      if (failure === undefined && code !== 0 && !(stopping && stopSignal)) failure = code ?? 1;
      // One app ending for good (a crash past its budget, a bad config, a stop of its own) stops the other.
      if (stopping) finishIfDone();
      else stopApps();
    });
  };

  for (const undo of earlyHandlers.splice(0)) undo();
  // (A hang-up reaches the apps too, in this terminal's session, and ends them at once: the default action,
  // which `nohup` keeps from them when they run on their own. Then this process takes Redis down.)
  for (const signal of STOP_SIGNALS) process.on(signal, stopApps);
  run('gateway', false);
  run('worker', false);
}

type AppName = 'gateway' | 'worker';

void main();
