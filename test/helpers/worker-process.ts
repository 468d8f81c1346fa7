import type { Gateway } from '../../apps/gateway/src/index.js';
import type { TestPlatform } from './platform.js';
import { Spawned, type Exit } from './spawned.js';
import { waitUntil } from './wait.js';

/**
 * A worker process (`npm run start:worker`, its own process group) on the
 * platform's Redis, prefix and model repository, started once the gateways
 * (the platform's and any others given) count it ready for `model`.
 */
export async function startWorkerProcess(
  p: TestPlatform,
  model: string,
  options: { env?: Record<string, string>; gateways?: Gateway[]; nodeArgs?: readonly string[] } = {},
): Promise<Spawned> {
  const worker = new Spawned(
    'start:worker',
    {
      REDIS_URL: p.config.redisUrl,
      QUEUE_PREFIX: p.prefix,
      MODEL_REPOSITORY: p.config.modelRepository,
      WORKER_METRICS_PORT: '0',
      ...options.env,
    },
    options.nodeArgs ? { nodeArgs: options.nodeArgs } : {},
  );
  await worker.waitForLog('worker started', 60_000);
  await waitUntil(
    async () => {
      for (const g of [p.gateway, ...(options.gateways ?? [])]) await g.catalog.refresh();
      const m = (await (await p.api(`/v1/models/${model}`)).json()) as { versions_detail?: Array<{ workers_ready: number }> };
      return (m.versions_detail?.[0]?.workers_ready ?? 0) > 0;
    },
    20_000,
    'the gateways to see the worker',
  );
  return worker;
}

/**
 * Worker processes a test starts that may die under it (an input that
 * crashes ONNX Runtime): each starts at once, with no wait for it to be
 * ready (it may die first), its exit recorded; `stop()` ends the ones still
 * running (SIGTERM to the group, then SIGKILL).
 */
export class WorkerProcesses {
  private readonly started: Spawned[] = [];

  constructor(private readonly env: Record<string, string> = {}) {}

  start(p: TestPlatform): { worker: Spawned; exit: () => Exit | undefined } {
    const worker = new Spawned('start:worker', {
      REDIS_URL: p.config.redisUrl,
      QUEUE_PREFIX: p.prefix,
      MODEL_REPOSITORY: p.config.modelRepository,
      WORKER_METRICS_PORT: '0',
      ...this.env,
    });
    this.started.push(worker);
    let exited: Exit | undefined;
    void worker.exited.then((e) => (exited = e));
    return { worker, exit: () => exited };
  }

  async stop(): Promise<void> {
    for (const w of this.started.splice(0)) {
      if (!w.groupAlive()) continue;
      w.signalGroup('SIGTERM');
      await w.exit(20_000).catch(() => w.kill());
    }
  }
}
