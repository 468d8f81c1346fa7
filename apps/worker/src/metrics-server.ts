import { Worker } from 'node:worker_threads';
import { listenError } from '@infer/lifecycle';
import { DEFAULT_MAX_RUN_MS, mainThreadBeat } from '@infer/locks';

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

type FromThread =
  | { type: 'listening'; port: number }
  | { type: 'failed'; message: string; code?: string }
  | { type: 'scrape' }
  | { type: 'closed' };

/**
 * A worker's own endpoint for Prometheus (`GET /metrics`) and for liveness
 * probes (`GET /healthz`). Each worker replica serves its own, so
 * Prometheus scrapes every one of them (docker-compose.yml finds them
 * through DNS).
 *
 * Served from a thread of its own (probe-thread.mjs), not the main event
 * loop, which a model run holds for as long as it lasts: `/healthz` is 200
 * through a long run and 503 once the main loop has been silent past
 * `maxRunMs` (WORKER_MAX_RUN_MS: a hung worker, whose locks lapse too);
 * `/metrics` is scraped on the main thread, and answered with the last
 * scrape while a run holds it. Two routes on node:http: a worker has no
 * HTTP API and needs no framework for these.
 */
export function serveMetrics(metrics: Scrapeable, port: number, host: string, maxRunMs = DEFAULT_MAX_RUN_MS): Promise<MetricsServer> {
  // execArgv: [] — not tsx's loader: the thread is plain JavaScript and starts in milliseconds.
  const thread = new Worker(new URL('./probe-thread.mjs', import.meta.url), {
    workerData: { beat: mainThreadBeat(), port, host, maxRunMs, metricsEnabled: metrics.enabled !== false, contentType: metrics.contentType },
    execArgv: [],
  });
  return new Promise((resolve, reject) => {
    let closing: Promise<void> | undefined;
    let whenClosed = (): void => undefined;
    thread.on('message', (m: FromThread) => {
      if (m.type === 'scrape') {
        metrics.scrape().then(
          (text) => thread.postMessage({ type: 'scraped', text }),
          (err: unknown) => thread.postMessage({ type: 'scraped', error: (err as Error).message }),
        );
      } else if (m.type === 'listening') {
        resolve({
          port: m.port,
          close: () =>
            (closing ??= new Promise<void>((done) => {
              whenClosed = done;
              thread.postMessage({ type: 'close' });
            }).then(() => thread.terminate().then(() => undefined))),
        });
      } else if (m.type === 'failed') {
        reject(listenError(Object.assign(new Error(m.message), { code: m.code }), 'WORKER_METRICS_PORT', port, host));
        void thread.terminate();
      } else if (m.type === 'closed') {
        whenClosed();
      }
    });
    thread.on('error', (err) => reject(err));
    // A thread that ended before it listened (or was ended by close) settles what waits on it.
    thread.on('exit', () => {
      reject(new Error('the metrics server thread ended before it listened'));
      whenClosed();
    });
  });
}
