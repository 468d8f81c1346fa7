import { collectDefaultMetrics, Registry } from 'prom-client';

let shared: Registry | undefined;

/**
 * How often the event-loop lag monitor samples (ms). prom-client's default
 * is 10: a timer that wakes the process 100 times a second for as long as
 * it lives, which alone kept a scraped, idle gateway at 1.2% of a core here
 * (0.2% unscraped). At 100 the lag percentiles still come from ~1,500
 * samples over a 15 s scrape interval.
 */
const EVENT_LOOP_SAMPLE_MS = 100;

/**
 * Node's default process metrics (CPU, memory, event loop lag, GC), once per
 * process: each collectDefaultMetrics call starts its own event-loop monitor
 * and GC observer, and tests build many gateways and workers in one process.
 */
export function processRegistry(): Registry {
  if (!shared) {
    shared = new Registry();
    collectDefaultMetrics({ register: shared, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
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
