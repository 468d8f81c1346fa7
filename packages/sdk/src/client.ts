import { Batches } from './batches.js';
import { Transport } from './http.js';
import { Jobs } from './jobs.js';
import { Models } from './models.js';
import { Webhooks } from './webhooks.js';

export interface InferClientOptions {
  /** The gateway, e.g. `http://localhost:8080` (a path prefix is kept). */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>`. */
  apiKey: string;
  /**
   * An admin key (the gateway's ADMIN_API_KEYS), sent instead of `apiKey` by
   * the model-lifecycle admin calls (`models.setRouting`, `load`, `unload`,
   * rollouts, events). Absent: they send `apiKey`, so a client built with an
   * admin key as its `apiKey` works too (for those calls only: the tenants'
   * routes take API keys).
   */
  adminKey?: string;
  /** A fetch to use instead of the global one (tests, proxies, instrumentation). */
  fetch?: typeof fetch;
  /**
   * Deadline of one request, on top of any `wait` the server was asked to
   * hold it for. Uploads have none; streamed results count only to the headers.
   * @default 30000
   */
  timeoutMs?: number;
  /** Retries of a 429 or 503 on a GET (or a POST with an idempotency key). @default 3 */
  maxRetries?: number;
  /** A `Retry-After` longer than this is not waited out: the error is thrown at once. @default 30000 */
  maxRetryDelayMs?: number;
}

/**
 * The platform's HTTP API (docs/api.md), typed.
 *
 * @example
 * const client = new InferClient({ baseUrl: 'http://localhost:8080', apiKey: 'dev-key' });
 * const job = await client.jobs.run({ model: 'mlp', input: { features: new Array(64).fill(0.5) } });
 *
 * @example
 * // The model lifecycle, with an admin key (ADMIN_API_KEYS):
 * const ops = new InferClient({ baseUrl: 'http://localhost:8080', apiKey: 'dev-key', adminKey: process.env.INFER_ADMIN_KEY });
 * await ops.models.setRouting('mlp', { '2': 90, '3': 10 });
 */
export class InferClient {
  readonly models: Models;
  readonly jobs: Jobs;
  readonly batches: Batches;
  readonly webhooks: Webhooks;

  constructor(options: InferClientOptions) {
    const http = new Transport({
      baseUrl: options.baseUrl,
      apiKey: options.apiKey,
      adminKey: options.adminKey,
      // Looked up per call, not captured: a test that swaps globalThis.fetch is honoured.
      fetch: options.fetch ?? ((input, init) => fetch(input, init)),
      timeoutMs: options.timeoutMs ?? 30_000,
      maxRetries: options.maxRetries ?? 3,
      maxRetryDelayMs: options.maxRetryDelayMs ?? 30_000,
    });
    this.models = new Models(http);
    this.jobs = new Jobs(http);
    this.batches = new Batches(http);
    this.webhooks = new Webhooks(http);
  }
}
