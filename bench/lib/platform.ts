/**
 * What every bench section shares: a private redis-server, the real
 * gateway and worker as separate processes (as in production), and small
 * helpers. Sections measure ratios within one run, since this machine is
 * shared and noisy.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from '../../scripts/lib/free-port.js';

export { freePort };

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const BENCH_KEY = 'bench-key';

export interface Figure {
  name: string;
  value: number;
  unit: string;
  target?: string;
  ok?: boolean;
}

export async function until<T>(what: string, f: () => Promise<T | null | undefined | false>, timeoutMs = 60_000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f().catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const percentile = (xs: number[], p: number): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

export interface BenchRedis {
  url: string;
  /** A plain connection for INFO, SCAN and the like. */
  admin: Redis;
  /** False for a throwaway server this bench started; true for BENCH_REDIS_URL, where keys must be cleaned up by prefix. */
  shared: boolean;
  stop(): Promise<void>;
}

/**
 * A throwaway redis-server on a free port, so the bench neither disturbs nor
 * is disturbed by other people's traffic on the shared one (Redis is one
 * thread: their tests would show up as our latency). With BENCH_REDIS_URL
 * set (e.g. redis://127.0.0.1:6379), that Redis is used instead; every bench
 * then works under its own key prefix and deletes it at the end.
 */
export async function startRedis(): Promise<BenchRedis> {
  const sharedUrl = process.env.BENCH_REDIS_URL;
  if (sharedUrl) {
    const admin = new Redis(sharedUrl, { maxRetriesPerRequest: null });
    await admin.ping();
    return { url: sharedUrl, admin, shared: true, stop: async () => void admin.disconnect() };
  }
  const port = await freePort();
  const server = track(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' }));
  const url = `redis://127.0.0.1:${port}`;
  const admin = new Redis(url, { maxRetriesPerRequest: null, lazyConnect: true });
  admin.on('error', () => undefined); // refused until redis-server is up
  await until('redis', async () => {
    await admin.connect().catch(() => undefined);
    return (await admin.ping()) === 'PONG';
  });
  return {
    url,
    admin,
    shared: false,
    async stop() {
      admin.disconnect();
      await stopProcess(server);
    },
  };
}

/**
 * Every process a bench spawns, so none outlives the bench: if the bench
 * dies or is interrupted (run.ts turns SIGINT/SIGTERM into an exit), they are
 * killed on the way out instead of being left holding ports and Redis.
 */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** From SIGTERM to exit. */
  ms: number;
  /** True when it outlived the deadline and was SIGKILLed. */
  killed: boolean;
}

/** SIGTERM, wait for the exit, SIGKILL after `deadlineMs` (the apps' own shutdown deadline is 30 s). */
export function stopProcess(p: ChildProcess, deadlineMs = 35_000): Promise<ProcessExit> {
  const t0 = performance.now();
  return new Promise<ProcessExit>((resolve) => {
    let killed = false;
    const done = () => resolve({ code: p.exitCode, signal: p.signalCode, ms: performance.now() - t0, killed });
    if (p.exitCode !== null || p.signalCode !== null) return done();
    const timer = setTimeout(() => {
      killed = true;
      p.kill('SIGKILL');
    }, deadlineMs);
    p.once('exit', () => {
      clearTimeout(timer);
      done();
    });
    p.kill('SIGTERM');
  });
}

/** SCAN + UNLINK every key under `prefix:`, so a bench on a shared Redis leaves nothing behind. Returns the count. */
export async function deleteKeys(redis: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (found.length) {
      // One UNLINK a key: a multi-key one is refused on Redis Cluster when the keys' slots differ.
      const pipe = redis.pipeline();
      for (const key of found) pipe.unlink(key);
      for (const [err, n] of (await pipe.exec()) ?? []) if (!err) deleted += n as number;
    }
  } while (cursor !== '0');
  return deleted;
}

export interface BenchPlatform {
  base: string;
  /** The QUEUE_PREFIX of this platform's keys. */
  prefix: string;
  gateway: ChildProcess;
  /** The first worker. */
  worker: ChildProcess;
  /** Every worker process (`options.workers` of them), the first included. */
  workers: ChildProcess[];
  /** Stop every process (SIGTERM, wait for the exits), then delete every key under the prefix; the exits are the gateway's and the first worker's. */
  close(): Promise<{ gateway: ProcessExit; worker: ProcessExit; keysDeleted: number }>;
}

/** The real gateway and worker processes, on their own port and key prefix. */
export async function startBenchPlatform(
  redisUrl: string,
  options: {
    modelRepository?: string;
    env?: Record<string, string>;
    workerModels?: string;
    /** Worker processes to start, all alike (each with its own metrics port). @default 1 */
    workers?: number;
    /** The POST /v1/jobs body that tells the worker is up: a job for a model it serves. @default one mlp job */
    probeBody?: string;
    /**
     * Start both processes through bench/lib/app-main.ts with metrics on
     * (true) or off (false: createGateway/createWorker's `metrics: false`)
     * instead of the apps' main.ts. @default the apps' main.ts (metrics on)
     */
    metrics?: boolean;
  } = {},
): Promise<BenchPlatform> {
  const port = await freePort();
  const prefix = `bench-${process.pid}-${port}`;
  const env = {
    ...process.env,
    REDIS_URL: redisUrl,
    PORT: String(port),
    HOST: '127.0.0.1',
    QUEUE_PREFIX: prefix,
    // BENCH_LOG_LEVEL=info measures with the worker's per-job log lines on (they go to the bench's stdout).
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
    RATE_LIMIT_PER_SECOND: '1000000',
    API_KEYS: `bench:${BENCH_KEY}`,
    MODEL_REPOSITORY: options.modelRepository ?? path.join(ROOT, 'models'),
    WORKER_MODELS: options.workerModels ?? 'mlp',
    // A free port: a bench must not collide with a worker already on 9464.
    WORKER_METRICS_PORT: '0',
    ...options.env,
    ...(options.metrics === undefined ? {} : { BENCH_METRICS: options.metrics ? 'on' : 'off' }),
  };
  // BENCH_PROF=gateway (or worker) writes a V8 CPU profile of that process to /tmp/prof when it exits.
  // BENCH_NODE_FLAGS="--trace-gc …" passes extra node flags to both processes (a diagnostic, like BENCH_PROF).
  const prof = (name: string) => (process.env.BENCH_PROF && name.includes(process.env.BENCH_PROF) ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof'] : []);
  const proc = (name: 'gateway' | 'worker') => {
    const main = options.metrics === undefined ? [`apps/${name}/src/main.ts`] : ['bench/lib/app-main.ts', name];
    return track(spawn(process.execPath, [...prof(name), ...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean), '--import', 'tsx', ...main], { cwd: ROOT, env, stdio: ['ignore', 'inherit', 'inherit'] }));
  };
  const gateway = proc('gateway');
  const workers = Array.from({ length: Math.max(1, options.workers ?? 1) }, () => proc('worker'));
  const worker = workers[0]!;
  const base = `http://127.0.0.1:${port}`;
  const close = async () => {
    const [g, w] = await Promise.all([stopProcess(gateway), stopProcess(worker), ...workers.slice(1).map((x) => stopProcess(x))]);
    const admin = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    try {
      return { gateway: g, worker: w, keysDeleted: await deleteKeys(admin, prefix) };
    } finally {
      admin.disconnect();
    }
  };
  // A process that dies while starting (a bad env, a compile error) fails the bench now, not after until()'s timeout.
  let starting = true;
  const exited = (p: ChildProcess, name: string) =>
    new Promise<void>((resolve, reject) =>
      p.once('exit', (code) => (starting ? reject(new Error(`bench: the ${name} exited (${code}) while starting`)) : resolve())),
    );
  try {
    await Promise.race([startup(base, options.probeBody, workers.length), exited(gateway, 'gateway'), ...workers.map((w, i) => exited(w, i === 0 ? 'worker' : `worker ${i + 1}`))]);
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  } finally {
    starting = false;
  }
  return { base, prefix, gateway, worker, workers, close };
}

const MLP_PROBE = JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } });

async function startup(base: string, probeBody = MLP_PROBE, workers = 1): Promise<void> {
  await until('the gateway', async () => (await fetch(`${base}/readyz`)).ok);
  // The worker is up once it has run a job.
  await until('the worker', async () => {
    const res = await benchApi(base, '/v1/jobs', {
      method: 'POST',
      headers: { prefer: 'wait=5' },
      body: probeBody,
    });
    return res.status === 200;
  });
  // The probe proves one worker; with more, wait until /readyz counts them all as serving the probe's model.
  if (workers > 1) {
    const model = (JSON.parse(probeBody) as { model: string }).model;
    await until(`${workers} workers`, async () => {
      const ready = (await (await fetch(`${base}/readyz`)).json()) as { models?: Record<string, Record<string, { workers_ready: number }>> };
      return Object.values(ready.models?.[model] ?? {}).some((v) => v.workers_ready >= workers);
    });
  }
}

export function benchApi(base: string, pathname: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${BENCH_KEY}`);
  if (init.body !== undefined && !headers.has('content-type')) headers.set('content-type', 'application/json');
  return fetch(base + pathname, { ...init, headers });
}

export function formatFigure(f: Figure): string {
  const v = Math.abs(f.value) >= 100 ? Math.round(f.value).toLocaleString('en-US') : String(Math.round(f.value * 100) / 100);
  const verdict = f.target ? `   target ${f.target}: ${f.ok ? 'PASS' : 'FAIL'}` : '';
  return `  ${f.name.padEnd(64)} ${v.padStart(12)} ${f.unit}${verdict}`;
}
