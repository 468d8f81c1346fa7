import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { tempModelRepo, type TempModelRepo } from './helpers/model-repo.js';
import { REPO_ROOT, SHIPPED_MODELS, TEST_KEY, uniquePrefix } from './helpers/platform.js';
import { freePort, OwnRedis } from './helpers/redis-server.js';

/**
 * SIGTERM to the process group while Redis is away (a Redis failover or
 * restart during a rolling deploy). Neither process holds any work: the
 * graceful shutdown has nothing to finish, so it must end promptly with
 * exit code 0, not sit out its deadline and exit 1.
 */

interface LogLine {
  msg?: string;
  [key: string]: unknown;
}

class App {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  private readonly listeners = new Set<() => void>();

  constructor(app: 'gateway' | 'worker', env: Record<string, string>) {
    this.child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'apps', app, 'src', 'main.ts')], {
      cwd: REPO_ROOT,
      detached: true,
      stdio: ['ignore', 'pipe', 'ignore'],
      env: { ...process.env, LOG_LEVEL: 'info', ...env },
    });
    const rl = createInterface({ input: this.child.stdout! });
    rl.on('line', (text) => {
      try {
        this.lines.push(JSON.parse(text) as LogLine);
      } catch {
        this.lines.push({ msg: text });
      }
      for (const l of this.listeners) l();
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal, at: performance.now() })));
  }

  logged(prefix: string): LogLine[] {
    return this.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith(prefix));
  }

  waitForLog(prefix: string, ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const look = () => {
        if (this.logged(prefix).length > 0) {
          clearTimeout(timer);
          this.listeners.delete(look);
          resolve();
        }
      };
      const timer = setTimeout(() => {
        this.listeners.delete(look);
        reject(new Error(`no "${prefix}" within ${ms} ms: ${this.tail()}`));
      }, ms);
      this.listeners.add(look);
      look();
    });
  }

  signalGroup(signal: NodeJS.Signals): void {
    process.kill(-this.child.pid!, signal);
  }

  async exit(ms: number) {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)));
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  kill(): void {
    try {
      process.kill(-this.child.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }

  tail(): string {
    return this.lines
      .slice(-6)
      .map((l) => JSON.stringify(l))
      .join('\n  ');
  }
}

describe('SIGTERM while Redis is away', function () {
  this.timeout(90_000);
  let redis: OwnRedis;
  let repo: TempModelRepo;
  const prefix = uniquePrefix('rf-away');
  const apps: App[] = [];

  before(async () => {
    repo = tempModelRepo({ mlp: { from: path.join(SHIPPED_MODELS, 'mlp') } });
    redis = await OwnRedis.start();
  });
  afterEach(() => {
    for (const a of apps) a.kill();
  });
  after(async () => {
    await redis?.stop();
    repo?.remove();
  });

  it('an idle worker signalled while Redis is down exits 0, well within its 30 s deadline', async () => {
    await redis.start();
    const worker = new App('worker', { REDIS_URL: redis.url, QUEUE_PREFIX: prefix, MODEL_REPOSITORY: repo.root, WORKER_METRICS_PORT: '0' });
    apps.push(worker);
    await worker.waitForLog('worker started', 30_000);
    await redis.stop();
    await worker.waitForLog('redis connection error', 10_000);
    const t0 = performance.now();
    worker.signalGroup('SIGTERM');
    await worker.waitForLog('shutting down', 5_000);
    const exit = await worker.exit(40_000);
    expect(exit, `still running 40 s after SIGTERM: ${worker.tail()}`).to.not.equal(null);
    const took = Math.round(exit!.at - t0);
    expect({ code: exit!.code, signal: exit!.signal, overDeadline: worker.logged('shutdown took longer').length > 0 }, `exited after ${took} ms:\n  ${worker.tail()}`).to.deep.equal({
      code: 0,
      signal: null,
      overDeadline: false,
    });
    expect(took, 'ms from SIGTERM to exit').to.be.below(10_000);
  });

  it('a gateway signalled while Redis is down exits 0 promptly', async () => {
    await redis.start();
    const port = await freePort();
    const gateway = new App('gateway', {
      REDIS_URL: redis.url,
      QUEUE_PREFIX: prefix,
      MODEL_REPOSITORY: repo.root,
      API_KEYS: `tenant-a:${TEST_KEY}`,
      PORT: String(port),
      HOST: '127.0.0.1',
    });
    apps.push(gateway);
    await gateway.waitForLog('gateway listening', 30_000);
    await redis.stop();
    await gateway.waitForLog('redis connection error', 10_000);
    const t0 = performance.now();
    gateway.signalGroup('SIGTERM');
    const exit = await gateway.exit(20_000);
    expect(exit, `still running 20 s after SIGTERM: ${gateway.tail()}`).to.not.equal(null);
    expect({ code: exit!.code, signal: exit!.signal }, gateway.tail()).to.deep.equal({ code: 0, signal: null });
    expect(exit!.at - t0).to.be.below(10_000);
  });
});
