import { collectDefaultMetrics, Registry } from 'prom-client';

let shared: Registry | undefined;

/**
 * Node's default process metrics (CPU, memory, event loop lag, GC), once per
 * process: each collectDefaultMetrics call starts its own event-loop monitor
 * and GC observer, and tests build many gateways and workers in one process.
 */
export function processRegistry(): Registry {
  if (!shared) {
    shared = new Registry();
    collectDefaultMetrics({ register: shared });
  }
  return shared;
}

/**
 * An app's Prometheus metrics: a registry of its own (tests build many apps
 * in one process), scraped together with the process's default metrics.
 */
export class ScrapedMetrics {
  readonly registry = new Registry();

  /** The scrape: this app's metrics and the process's. */
  async scrape(): Promise<string> {
    return Registry.merge([this.registry, processRegistry()]).metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
