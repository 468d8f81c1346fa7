import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { freePort } from '../../scripts/lib/free-port.js';
import { waitUntil } from './wait.js';

export { freePort };

/** Whether a Redis answers PING at `url` (one try, no retries). */
export async function pings(url: string): Promise<boolean> {
  const client = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 500 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/**
 * A redis-server of a test's own, on a free port, without persistence
 * unless its extra options turn it on: for tests that take Redis away.
 * `stop()` kills it (as a crash would); `start()` brings it back on the same
 * port (and the same options: with an append-only file in a `--dir`, the
 * data it acknowledged).
 */
export class OwnRedis {
  private child: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    private readonly extraArgs: readonly string[] = [],
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** `extraArgs` are more redis-server options, e.g. `['--maxmemory', '8mb']`; they come last, so they win over the defaults (`['--appendonly', 'yes']`). */
  static async start(extraArgs: readonly string[] = []): Promise<OwnRedis> {
    const r = new OwnRedis(await freePort(), extraArgs);
    await r.start();
    return r;
  }

  async start(): Promise<void> {
    if (this.child) return;
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...this.extraArgs], { stdio: 'ignore' });
    this.child = child;
    child.once('exit', () => {
      if (this.child === child) this.child = undefined;
    });
    await waitUntil(() => pings(this.url), 5000, `redis-server on port ${this.port} to answer PING`);
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
  }
}

/** Shut down whatever Redis still answers at `url` (a throwaway one a test's `npm start` may have left: cleanup only). */
export async function shutDownIfAnswering(url: string): Promise<void> {
  if (!(await pings(url))) return;
  const c = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  c.on('error', () => undefined);
  await c.connect().then(() => c.call('SHUTDOWN', 'NOSAVE')).catch(() => undefined);
  c.disconnect();
}
