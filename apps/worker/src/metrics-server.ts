import { Worker } from 'node:worker_threads';
import { listenError } from '@infer/lifecycle';
import { DEFAULT_MAX_RUN_MS, mainThreadBeat } from '@infer/locks';
import type { Logger } from '@infer/logger';

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

type FromThread = { type: 'listening'; port: number } | { type: 'failed'; message: string; code?: string } | { type: 'scrape' } | { type: 'closed' };

/** A thread that ends sooner than this after its start is started again this long after (as the lock-renewal thread is). */
const RESPAWN_AFTER_MS = 1000;

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
 * HTTP API and needs no framework for these. A thread that ends unasked is
 * logged and started again on the same port.
 */
export function serveMetrics(metrics: Scrapeable, port: number, host: string, maxRunMs = DEFAULT_MAX_RUN_MS, logger?: Logger): Promise<MetricsServer> {
  return new Promise((resolve, reject) => {
    let bound: number | undefined;
    let closing = false;
    let current: Worker | undefined;
    let whenClosed: (() => void) | undefined;

    const spawn = (onPort: number): void => {
      const startedAt = Date.now();
      // execArgv: [] — not tsx's loader: the thread is plain JavaScript and starts in milliseconds.
      const thread = new Worker(new URL('./probe-thread.mjs', import.meta.url), {
        workerData: { beat: mainThreadBeat(), port: onPort, host, maxRunMs, metricsEnabled: metrics.enabled !== false, contentType: metrics.contentType },
        execArgv: [],
      });
      current = thread;
      thread.on('message', (m: FromThread) => {
        if (m.type === 'scrape') {
          metrics.scrape().then(
            (text) => thread.postMessage({ type: 'scraped', text }),
            (err: unknown) => thread.postMessage({ type: 'scraped', error: (err as Error).message }),
          );
        } else if (m.type === 'listening') {
          if (bound === undefined) {
            bound = m.port;
            resolve({ port: m.port, close });
          }
        } else if (m.type === 'failed') {
          const err = listenError(Object.assign(new Error(m.message), { code: m.code }), 'WORKER_METRICS_PORT', onPort, host);
          if (bound === undefined) reject(err);
          else logger?.error({ err: err.message }, 'the metrics and /healthz server could not listen again; retrying');
          void thread.terminate();
        } else if (m.type === 'closed') {
          void thread.terminate();
        }
      });
      thread.on('error', (err) => {
        if (bound === undefined) reject(err);
        else logger?.error({ err: err.message }, 'the metrics and /healthz server thread failed');
      });
      thread.on('exit', (code) => {
        if (current !== thread) return;
        current = undefined;
        if (closing) {
          whenClosed?.();
          return;
        }
        if (bound === undefined) {
          reject(new Error(`the metrics server thread ended before it listened (exit code ${code})`));
          return;
        }
        // Ended unasked (it threw, or could not listen again): serve again on the port the worker announced.
        logger?.error({ code }, 'the metrics and /healthz server thread stopped; starting it again');
        const again = () => {
          if (!closing && current === undefined) spawn(bound!);
        };
        if (Date.now() - startedAt >= RESPAWN_AFTER_MS) again();
        else setTimeout(again, RESPAWN_AFTER_MS).unref();
      });
    };

    let closed: Promise<void> | undefined;
    const close = (): Promise<void> =>
      (closed ??= new Promise<void>((done) => {
        closing = true;
        if (!current) {
          done();
          return;
        }
        whenClosed = done;
        current.postMessage({ type: 'close' });
      }));

    spawn(port);
  });
}
