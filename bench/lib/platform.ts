/**
 * What every bench section shares: a private redis-server, the real
 * gateway and worker as separate processes (as in production), and small
 * helpers. Sections measure ratios within one run, since this machine is
 * shared and noisy.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const BENCH_KEY = 'bench-key';

export interface Figure {
  name: string;
  value: number;
  unit: string;
  target?: string;
  ok?: boolean;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
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

/** A throwaway redis-server on a free port, so the bench neither disturbs nor is disturbed by the shared one. */
export async function startRedis(): Promise<{ url: string; admin: Redis; stop(): Promise<void> }> {
  const port = await freePort();
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
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
    async stop() {
      admin.disconnect();
      await stopProcess(server);
    },
  };
}

export function stopProcess(p: ChildProcess): Promise<void> {
  return new Promise<void>((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    p.once('exit', () => resolve());
    p.kill('SIGTERM');
  });
}

export interface BenchPlatform {
  base: string;
  gateway: ChildProcess;
  worker: ChildProcess;
  close(): Promise<void>;
}

/** The real gateway and worker processes, on their own port and key prefix. */
export async function startBenchPlatform(
  redisUrl: string,
  options: { modelRepository?: string; env?: Record<string, string>; workerModels?: string } = {},
): Promise<BenchPlatform> {
  const port = await freePort();
  const env = {
    ...process.env,
    REDIS_URL: redisUrl,
    PORT: String(port),
    HOST: '127.0.0.1',
    QUEUE_PREFIX: `bench-${process.pid}-${port}`,
    LOG_LEVEL: 'warn',
    RATE_LIMIT_PER_SECOND: '1000000',
    API_KEYS: `bench:${BENCH_KEY}`,
    MODEL_REPOSITORY: options.modelRepository ?? path.join(ROOT, 'models'),
    WORKER_MODELS: options.workerModels ?? 'mlp',
    ...options.env,
  };
  const proc = (main: string) => spawn(process.execPath, [...(process.env.BENCH_PROF && main.includes(process.env.BENCH_PROF) ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof'] : []), '--import', 'tsx', main], { cwd: ROOT, env, stdio: ['ignore', 'inherit', 'inherit'] });
  const gateway = proc('apps/gateway/src/main.ts');
  const worker = proc('apps/worker/src/main.ts');
  const base = `http://127.0.0.1:${port}`;
  await until('the gateway', async () => (await fetch(`${base}/readyz`)).ok);
  // The worker is up once it has run a job.
  await until('the worker', async () => {
    const res = await benchApi(base, '/v1/jobs', {
      method: 'POST',
      headers: { prefer: 'wait=5' },
      body: JSON.stringify({ model: 'mlp', input: { features: new Array(64).fill(0.5) } }),
    });
    return res.status === 200;
  });
  return { base, gateway, worker, close: async () => void (await Promise.all([stopProcess(gateway), stopProcess(worker)])) };
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
