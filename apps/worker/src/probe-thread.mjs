// @ts-check
/**
 * The worker's probe server thread (see metrics-server.ts): `GET /healthz`
 * and `GET /metrics` on WORKER_METRICS_PORT, on an event loop of its own.
 * onnxruntime-node runs a model on the worker's main thread, holding its
 * event loop for as long as the run lasts; served there, a liveness probe
 * with an ordinary timeout (Kubernetes' default is 1 s) would take a
 * healthy worker in a long run for a dead one, and a Prometheus scrape
 * would fail. Plain JavaScript, as the lock-renewal thread is: up at once,
 * without tsx's loader.
 *
 * - /healthz answers here: 200 while the main thread's event loop has
 *   turned within WORKER_MAX_RUN_MS (`beat`), 503 once it has been silent
 *   longer (a run past that limit, or a hang: its locks lapse then too).
 * - /metrics asks the main thread for a scrape; one that does not come
 *   within SCRAPE_WAIT_MS (a run holds the loop) is answered with the last
 *   scrape the main thread gave, so a busy worker stays in Prometheus.
 */
import { createServer } from 'node:http';
import { parentPort, workerData } from 'node:worker_threads';

if (!parentPort) throw new Error('probe-thread.mjs runs as a worker thread');
const main = parentPort;
const { port, host, maxRunMs, metricsEnabled, contentType } = workerData;
/** When the main thread's event loop last turned (ms since the epoch). */
const beat = /** @type {BigInt64Array} */ (workerData.beat);

/** How long a scrape waits for the main thread before the last one is served instead. */
const SCRAPE_WAIT_MS = 500;

/** The last scrape the main thread answered. @type {string | undefined} */
let lastScrape;
/**
 * Whether a scrape is asked of the main thread and not answered yet, and who waits for it: scrapes that
 * come meanwhile (a run holds the loop) share it, so a long run leaves one to answer when it ends, not one
 * per scrape; one that gives up (SCRAPE_WAIT_MS) leaves the set, so a hung worker holds none of them.
 */
let asking = false;
/** @type {Set<(answer: { text?: string, error?: string }) => void>} */
const waiting = new Set();

/** @returns {Promise<{ text?: string, error?: string } | null>} null: no answer within SCRAPE_WAIT_MS */
function askScrape() {
  if (!asking) {
    asking = true;
    main.postMessage({ type: 'scrape' });
  }
  return new Promise((resolve) => {
    /** @param {{ text?: string, error?: string }} answer */
    const wake = (answer) => {
      clearTimeout(timer);
      resolve(answer);
    };
    const timer = setTimeout(() => {
      waiting.delete(wake);
      resolve(null);
    }, SCRAPE_WAIT_MS);
    waiting.add(wake);
  });
}

/**
 * @param {import('node:http').ServerResponse} res
 * @param {number} status
 * @param {string} type
 * @param {string} body
 * @param {boolean} head
 */
function send(res, status, type, body, head) {
  try {
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
    res.end(head ? undefined : body);
  } catch (err) {
    // A header Node refuses (a content type it finds invalid): the request fails, not the thread.
    res.destroy(/** @type {Error} */ (err));
  }
}

const JSON_TYPE = 'application/json; charset=utf-8';
const TEXT_TYPE = 'text/plain; charset=utf-8';

const server = createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0];
  const head = req.method === 'HEAD';
  if (req.method !== 'GET' && !head) {
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
  } else if (path === '/healthz') {
    const silentMs = Date.now() - Number(Atomics.load(beat, 0));
    if (silentMs > maxRunMs) send(res, 503, JSON_TYPE, JSON.stringify({ status: 'hung', silent_ms: silentMs }), head);
    else send(res, 200, JSON_TYPE, '{"status":"ok"}', head);
  } else if (path === '/metrics' && metricsEnabled) {
    void askScrape().then((answer) => {
      if (answer?.text !== undefined) send(res, 200, contentType, answer.text, head);
      else if (answer?.error !== undefined) send(res, 500, TEXT_TYPE, `scrape failed: ${answer.error}\n`, head);
      else if (lastScrape !== undefined) send(res, 200, contentType, lastScrape, head);
      else send(res, 503, TEXT_TYPE, 'the worker is in a model run and has not been scraped yet: try again\n', head);
    });
  } else {
    const served = metricsEnabled ? '/metrics and /healthz are served here' : '/healthz is served here (metrics are off in this worker)';
    send(res, 404, TEXT_TYPE, `not found: ${served}\n`, head);
  }
});

main.on('message', (/** @type {{ type: string, text?: string, error?: string }} */ m) => {
  if (m.type === 'scraped') {
    if (m.text !== undefined) lastScrape = m.text;
    asking = false;
    const woken = [...waiting];
    waiting.clear();
    for (const wake of woken) wake(m);
  } else if (m.type === 'close') {
    server.close(() => main.postMessage({ type: 'closed' }));
    // Prometheus keeps its connection alive between scrapes: drop it, or close() waits for it.
    server.closeAllConnections();
  }
});

let listening = false;
// Before it listens: the port is taken, or HOST is not this machine's (the main thread says which). After: nothing to tell.
server.on('error', (/** @type {NodeJS.ErrnoException} */ err) => {
  if (!listening) main.postMessage({ type: 'failed', message: err.message, code: err.code });
});
server.listen(port, host, () => {
  listening = true;
  const address = /** @type {import('node:net').AddressInfo} */ (server.address());
  main.postMessage({ type: 'listening', port: address.port });
});
