import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import { Counter } from 'prom-client';
import { FastHistogram, ScrapedMetrics } from '@infer/metrics';
import { BATCH_SIZE_BUCKETS } from '@infer/models';
import { captureRoute, routeLabel } from './http/route-label.js';

/** Problem codes counted as rejections: the platform saying "not now", as opposed to a client's mistake. */
export const REJECTION_REASONS = ['rate_limited', 'queue_full', 'quota_exceeded', 'unavailable'] as const;
export type RejectionReason = (typeof REJECTION_REASONS)[number];

type Inc = { inc(value?: number): void };
type Observe = { observe(value: number): void };

/**
 * Children per (model, version), made once. A prom-client counter child still
 * hashes its labels on each call; the per-request histograms are
 * FastHistograms (@infer/metrics), whose children do no label work at all.
 */
class PerVersion<T> {
  private readonly byModel = new Map<string, Map<string, T>>();
  constructor(private readonly make: (model: string, version: string) => T) {}

  get(model: string, version: string): T {
    let versions = this.byModel.get(model);
    if (!versions) this.byModel.set(model, (versions = new Map()));
    let child = versions.get(version);
    if (child === undefined) versions.set(version, (child = this.make(model, version)));
    return child;
  }
}

/**
 * The gateway's Prometheus metrics, in a registry of its own, scraped with
 * the process's (ScrapedMetrics). The queue and fleet gauges read Redis when
 * scraped (queue-metrics.ts); everything here is counted in memory as
 * requests go.
 */
export class GatewayMetrics extends ScrapedMetrics {
  /** Metrics off (createGateway's `metrics: false`): the same calls, each doing nothing, and no `/metrics` route. */
  static off(): GatewayMetrics {
    return new GatewayMetricsOff();
  }

  /** False for `GatewayMetrics.off()`: nothing is counted and there is nothing to scrape. */
  readonly enabled: boolean = true;
  readonly requests = new FastHistogram({
    name: 'infer_http_request_duration_seconds',
    help: 'HTTP request latency by method, full route pattern (or "unmatched") and status',
    labelNames: ['method', 'route', 'status'] as const,
    // Up to an NDJSON upload's limit (5 min); a Prefer: wait hold is at most MAX_WAIT_SECONDS (≤ 600).
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
    registers: [this.registry],
  });
  readonly jobsSubmitted = new Counter({
    name: 'infer_jobs_submitted_total',
    help: 'Jobs accepted by POST /v1/jobs (idempotent replays not counted)',
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });
  readonly jobsEnded = new Counter({
    name: 'infer_jobs_ended_total',
    help: 'Jobs ended, by status; on a gateway only the jobs it canceled, for a client or at a read past the deadline (workers count the rest)',
    labelNames: ['model', 'version', 'status'] as const,
    registers: [this.registry],
  });
  readonly bulkRows = new Counter({
    name: 'infer_bulk_rows_total',
    help: 'Rows of bulk batches ended by this gateway: those of chunks with nothing to run (every item failed at upload); workers count the rest',
    labelNames: ['model', 'version', 'status'] as const,
    registers: [this.registry],
  });
  readonly envelopeInstances = new FastHistogram({
    name: 'infer_envelope_instances',
    help: 'Jobs per envelope (one queue write carries the jobs accepted in one turn of the event loop)',
    labelNames: ['model', 'version'] as const,
    buckets: [...BATCH_SIZE_BUCKETS],
    registers: [this.registry],
  });
  readonly rejections = new Counter({
    name: 'infer_requests_rejected_total',
    help: 'Requests refused for capacity: rate_limited (429), quota_exceeded (429), queue_full (503), unavailable (503)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  /** One child histogram per (method, route, status), made on first use; observing through it does no label work. */
  private readonly requestChildren = new Map<string, Observe>();
  private readonly submitted = new PerVersion<Inc>((model, version) => this.jobsSubmitted.labels({ model, version }));
  private readonly canceled = new PerVersion<Inc>((model, version) => this.jobsEnded.labels({ model, version, status: 'canceled' }));
  private readonly envelopes = new PerVersion<Observe>((model, version) => this.envelopeInstances.labels({ model, version }));
  private readonly rowsFailed = new PerVersion<Inc>((model, version) => this.bulkRows.labels({ model, version, status: 'failed' }));
  private readonly rejected = new Map<string, Inc>(REJECTION_REASONS.map((reason) => [reason, this.rejections.labels({ reason })]));

  constructor() {
    super();
    // Present from the start at 0, so rate() over them has a series before the first refusal.
    for (const child of this.rejected.values()) child.inc(0);
  }

  middleware(): RequestHandler {
    return (req, res, next) => {
      captureRoute(req);
      this.timeRequest(req, res, () => routeLabel(req, res.statusCode));
      next();
    };
  }

  /** Observe a request's duration when its answer is sent, under its route pattern (a string, or read once it is known). */
  timeRequest(req: IncomingMessage, res: ServerResponse, route: string | (() => string)): void {
    const started = performance.now();
    res.once('finish', () => {
      const pattern = typeof route === 'string' ? route : route();
      const method = req.method ?? 'GET';
      const key = `${method} ${pattern} ${res.statusCode}`;
      let child = this.requestChildren.get(key);
      if (!child) {
        child = this.requests.labels({ method, route: pattern, status: String(res.statusCode) });
        this.requestChildren.set(key, child);
      }
      child.observe((performance.now() - started) / 1000);
    });
  }

  jobSubmitted(model: string, version: string): void {
    this.submitted.get(model, version).inc();
  }

  jobCanceled(model: string, version: string): void {
    this.canceled.get(model, version).inc();
  }

  envelopeWritten(model: string, version: string, instances: number): void {
    this.envelopes.get(model, version).observe(instances);
  }

  /** Rows of a bulk chunk this gateway ended itself, every one failed at upload. */
  bulkRowsFailed(model: string, version: string, rows: number): void {
    this.rowsFailed.get(model, version).inc(rows);
  }

  /** Count an error answer by its problem code, when it is a rejection (others are in the request histogram's status). */
  problem(code: string | undefined): void {
    if (code !== undefined) this.rejected.get(code)?.inc();
  }
}

/**
 * The gateway's metrics switched off, for measuring what they cost (the
 * `observability` bench section). A subclass, not a flag tested on every
 * call: with metrics on, the hot path runs exactly the code above.
 */
class GatewayMetricsOff extends GatewayMetrics {
  override readonly enabled: boolean = false;
  override middleware(): RequestHandler {
    return (_req, _res, next) => next();
  }
  override timeRequest(): void {}
  override jobSubmitted(): void {}
  override jobCanceled(): void {}
  override envelopeWritten(): void {}
  override bulkRowsFailed(): void {}
  override problem(): void {}
  override async scrape(): Promise<string> {
    return '';
  }
}
