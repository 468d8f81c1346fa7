import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import { Counter, Histogram, Registry } from 'prom-client';

/** The gateway's Prometheus metrics, in a registry of its own (tests build many apps). */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly requests = new Histogram({
    name: 'infer_http_request_duration_seconds',
    help: 'HTTP request latency by route and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly jobsSubmitted = new Counter({
    name: 'infer_jobs_submitted_total',
    help: 'Jobs accepted by POST /v1/jobs',
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });

  readonly envelopeInstances = new Histogram({
    name: 'infer_envelope_instances',
    help: 'Jobs per envelope (one queue write carries the jobs accepted in one turn of the event loop)',
    labelNames: ['model', 'version'] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [this.registry],
  });

  /** One child histogram per (method, route, status): labels are looked up once, not hashed per request. */
  private readonly requestChildren = new Map<string, { observe(seconds: number): void }>();

  middleware(): RequestHandler {
    // The route pattern, not the path: ids would explode the label set.
    return (req, res, next) => {
      this.timeRequest(req, res, () => (req.route ? req.baseUrl + (req.route.path as string) : 'unmatched'));
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
}
