import path from 'node:path';
import { loadConfig, type Config } from '@infer/config';
import { silentLogger } from '@infer/logger';
import { ModelRepository } from '@infer/models';
import { createGateway, type Gateway } from '../../apps/gateway/src/index.js';
import { createWorker, type InferenceWorker } from '../../apps/worker/src/index.js';
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from './redis-keys.js';

export { deletePrefix, TEST_REDIS_URL, uniquePrefix };

export const REPO_ROOT = path.resolve(import.meta.dirname, '..', '..');
/**
 * The tests' own copy of the shipped models (written by `npm run models`
 * beside ./models): tests never read the user's ./models.
 */
export const SHIPPED_MODELS = path.join(REPO_ROOT, 'test', 'fixtures', 'served');
export const FIXTURE_MODELS = path.join(REPO_ROOT, 'test', 'fixtures', 'models');
export interface PlatformOptions {
  /** Model repository folder. @default the shipped models */
  models?: string;
  /** Extra environment, as an operator would set it. */
  env?: Record<string, string>;
  /** Start a worker too. @default true */
  worker?: boolean;
  /** The Redis to run on (and to clean up). @default TEST_REDIS_URL */
  redisUrl?: string;
  /** The gateway's limit on an NDJSON upload's time (the 5-minute limit, shortened). */
  uploadTimeLimitMs?: number;
}

export interface TestPlatform {
  config: Config;
  prefix: string;
  baseUrl: string;
  gateway: Gateway;
  worker: InferenceWorker | undefined;
  /** Start the worker now (for a platform started with `worker: false`, or after `closeWorker()`), with createWorker's `options`; `close()` closes it. */
  startWorker(options?: Omit<NonNullable<Parameters<typeof createWorker>[2]>, 'models'>): Promise<InferenceWorker>;
  /** Close the worker (it leaves the fleet), so that none runs until `startWorker()`. */
  closeWorker(): Promise<void>;
  /** fetch against the gateway with the test tenant's API key. */
  api(pathname: string, init?: RequestInit & { key?: string | null }): Promise<Response>;
  close(): Promise<void>;
}

export const TEST_KEY = 'test-key-a';
export const OTHER_TENANT_KEY = 'test-key-b';

/**
 * An in-process gateway (on a free port) and worker, on the real Redis and
 * real ONNX Runtime, under a fresh key prefix. `close()` shuts both down and
 * deletes every key the run created.
 */
export async function startPlatform(options: PlatformOptions = {}): Promise<TestPlatform> {
  const prefix = uniquePrefix();
  const redisUrl = options.redisUrl ?? TEST_REDIS_URL;
  const config = loadConfig({
    REDIS_URL: redisUrl,
    MODEL_REPOSITORY: options.models ?? SHIPPED_MODELS,
    QUEUE_PREFIX: prefix,
    API_KEYS: `tenant-a:${TEST_KEY},tenant-b:${OTHER_TENANT_KEY}`,
    PORT: '0',
    HOST: '127.0.0.1',
    // Tests start many workers at once: each on a free port (InferenceWorker.metricsPort).
    WORKER_METRICS_PORT: '0',
    ...options.env,
  });
  // One repository for the gateway and the worker (a worker's: sessions built to run), loaded once.
  const models = await ModelRepository.load(config.modelRepository);
  const gateway = await createGateway(config, silentLogger, { models, ...(options.uploadTimeLimitMs ? { uploadTimeLimitMs: options.uploadTimeLimitMs } : {}) });
  let worker = options.worker === false ? undefined : await createWorker(config, silentLogger, { models });
  // The gateway's view of the fleet is up to a second old: let it see this worker now.
  if (worker) await gateway.catalog.refresh();
  const port = await gateway.listen(0, '127.0.0.1');
  const baseUrl = `http://127.0.0.1:${port}`;
  return {
    config,
    prefix,
    baseUrl,
    gateway,
    get worker() {
      return worker;
    },
    async startWorker(options = {}) {
      if (!worker) {
        worker = await createWorker(config, silentLogger, { ...options, models });
        await gateway.catalog.refresh();
      }
      return worker;
    },
    async closeWorker() {
      await worker?.close();
      worker = undefined;
      await gateway.catalog.refresh();
    },
    api(pathname, init = {}) {
      const { key = TEST_KEY, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (key !== null) headers.set('authorization', `Bearer ${key}`);
      if (rest.body !== undefined && !headers.has('content-type')) headers.set('content-type', 'application/json');
      return fetch(baseUrl + pathname, { ...rest, headers });
    },
    async close() {
      await worker?.close();
      await gateway.close();
      await models.close();
      await deletePrefix(redisUrl, prefix);
    },
  };
}
