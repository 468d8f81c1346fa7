import { listenError } from '@infer/lifecycle';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the server serves: a Prometheus scrape. */
export interface Scrapeable {
  scrape(): Promise<string>;
  readonly contentType: string;
  /** False with metrics off: /metrics answers 404, /healthz is served as ever. @default true */
  readonly enabled?: boolean;
}

export interface MetricsServer {
  /** The port bound (the one asked for, or the free one picked for 0). */
  port: number;
  close(): Promise<void>;
}

/**
 * A worker's own endpoint for Prometheus (`GET /metrics`) and for liveness
 * probes (`GET /healthz`: 200 while the process runs). Two routes on
 * node:http: a worker has no HTTP API and needs no framework for these.
 * Each worker replica serves its own, so Prometheus scrapes every one of
 * them (docker-compose.yml finds them through DNS).
 */
export function serveMetrics(metrics: Scrapeable, port: number, host: string): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics' && metrics.enabled !== false) {
      metrics.scrape().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.contentType, 'content-length': Buffer.byteLength(text) });
          res.end(head ? undefined : text);
        },
        (err: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(head ? undefined : `scrape failed: ${(err as Error).message}\n`);
        },
      );
    } else if (path === '/healthz') {
      const body = '{"status":"ok"}';
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      res.end(head ? undefined : body);
    } else {
      const served = metrics.enabled === false ? '/healthz is served here (metrics are off in this worker)' : '/metrics and /healthz are served here';
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end(head ? undefined : `not found: ${served}\n`);
    }
  });
  return new Promise((resolve, reject) => {
    const failed = (err: Error) => reject(listenError(err, 'WORKER_METRICS_PORT', port, host));
    server.once('error', failed);
    server.listen(port, host, () => {
      server.off('error', failed);
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            // Prometheus keeps its connection alive between scrapes: drop it, or close() waits for it.
            server.closeAllConnections();
          }),
      });
    });
  });
}
