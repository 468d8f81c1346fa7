import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { ForbiddenAddressError, guardedLookup, type Resolver } from './dns-guard.js';
import { isForbiddenAddress } from './url-guard.js';

export interface DeliveryRequest {
  url: string;
  /** The signed Standard Webhooks headers (and any others). */
  headers: Record<string, string>;
  body: string;
}

export interface DeliveryOptions {
  allowPrivate: boolean;
  /** The whole attempt, connect to response headers. @default 10_000 */
  timeoutMs?: number;
  /** How host names resolve. @default the system resolver (dns.lookup) */
  resolve?: Resolver;
  /** Aborts the attempt (the worker is shutting down). */
  signal?: AbortSignal;
  /** @default `infer-webhooks/1` */
  userAgent?: string;
}

/** How one attempt went. */
export interface AttemptOutcome {
  /** A 2xx answer: delivered. */
  ok: boolean;
  statusCode: number | null;
  /** Why it failed, in words; null when it succeeded. */
  error: string | null;
  durationMs: number;
  /** The receiver's `Retry-After` (429 and 503 only), in ms. */
  retryAfterMs: number | null;
  /** No retry can help: 410 Gone, a refused address, a URL that is not http(s). */
  final: boolean;
  /** Cut short by the caller's signal (its worker is shutting down): it says nothing of the receiver. */
  interrupted?: boolean;
}

export const DELIVERY_TIMEOUT_MS = 10_000;

/** How much of a receiver's answer body is read (and dropped) before the connection is cut. */
const ANSWER_BODY_READ_BYTES = 64 * 1024;

/**
 * Make one delivery attempt: POST the body and judge the answer. Never
 * throws; every way an attempt can go is an `AttemptOutcome`.
 *
 * - Redirects are not followed (node's http client never does): a 3xx is a
 *   failed attempt, retried like any other non-2xx.
 * - Unless `allowPrivate`, the address actually connected to is checked: a
 *   literal IP in the URL before connecting (node connects to those without
 *   a lookup), a name inside the socket's own `lookup` (see dns-guard.ts).
 * - One timer bounds the whole attempt, however slowly the receiver
 *   dribbles its answer.
 */
export function deliver(req: DeliveryRequest, options: DeliveryOptions): Promise<AttemptOutcome> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const failed = (error: string, final = false, statusCode: number | null = null): AttemptOutcome => ({
    ok: false,
    statusCode,
    error,
    durationMs: elapsed(),
    retryAfterMs: null,
    final,
  });

  let url: URL;
  try {
    url = new URL(req.url);
  } catch {
    return Promise.resolve(failed('the webhook URL does not parse', true));
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return Promise.resolve(failed('only http and https URLs are delivered to', true));
  const literal = url.hostname.replace(/^\[|\]$/g, '');
  if (!options.allowPrivate && isIP(literal) && isForbiddenAddress(literal)) {
    return Promise.resolve(failed(`address ${literal} is private, loopback, link-local or multicast; refused`, true));
  }
  // Interrupted, as one cut short mid-way: it runs again and does not use up an attempt.
  if (options.signal?.aborted) return Promise.resolve({ ...failed('aborted: the worker is shutting down'), interrupted: true });

  const timeoutMs = options.timeoutMs ?? DELIVERY_TIMEOUT_MS;
  const client = url.protocol === 'https:' ? https : http;
  return new Promise<AttemptOutcome>((resolve) => {
    let settled = false;
    const finish = (outcome: AttemptOutcome) => {
      if (settled) return;
      settled = true;
      resolve(outcome);
    };
    let request: http.ClientRequest;
    try {
      request = client.request(url, {
        method: 'POST',
        agent: false,
        lookup: guardedLookup({ allowPrivate: options.allowPrivate, ...(options.resolve ? { resolve: options.resolve } : {}) }),
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(req.body),
          'user-agent': options.userAgent ?? 'infer-webhooks/1',
          ...req.headers,
        },
      });
    } catch (err) {
      // A URL stored before the submit checks refused it (a malformed %-escape in its user-info, which Node decodes here).
      finish(failed(`the webhook URL cannot be used: ${(err as Error).message}`, true));
      return;
    }
    // When the timer fires, an answer may be waiting unread: the event loop was held (a model run on the
    // worker's loop) past the deadline. The verdict waits one turn, after the loop has read what came.
    const timer = setTimeout(() => {
      setImmediate(() => {
        finish(failed(`timed out after ${timeoutMs} ms`));
        request.destroy();
      });
    }, timeoutMs);
    const onAbort = () => {
      finish({ ...failed('aborted: the worker is shutting down'), interrupted: true });
      request.destroy();
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    // The timer outlives the answer's headers on purpose: it also ends a body that never finishes.
    request.on('close', () => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      // Closed with no answer and no error (e.g. a 101 whose socket was let go): the attempt still ends,
      // a turn later, so an 'error' that comes with the close names the cause first.
      setImmediate(() => finish(failed('the connection closed before an answer')));
    });
    // A 101 Switching Protocols is not an answer to a webhook: without this listener Node drops the socket
    // and the request gets neither 'response' nor 'error'.
    request.on('upgrade', (res, socket) => {
      socket.destroy();
      finish(failed(`HTTP ${res.statusCode ?? 101}: the receiver switched protocols`, false, res.statusCode ?? 101));
    });

    request.on('response', (res) => {
      const status = res.statusCode ?? 0;
      // The answer's body means nothing to us: a little is read off so a short one closes the socket
      // cleanly; past that the connection is cut, not left streaming until the timer.
      let read = 0;
      res.on('data', (chunk: Buffer) => {
        read += chunk.length;
        if (read > ANSWER_BODY_READ_BYTES) request.destroy();
      });
      res.on('error', () => undefined);
      res.on('end', () => request.destroy());
      if (status >= 200 && status < 300) {
        finish({ ok: true, statusCode: status, error: null, durationMs: elapsed(), retryAfterMs: null, final: false });
      } else if (status === 410) {
        finish(failed('410 Gone: the receiver asked for no more deliveries', true, status));
      } else if (status >= 300 && status < 400) {
        const where = res.headers.location ? ` to ${res.headers.location.slice(0, 200)}` : '';
        finish(failed(`redirect (${status})${where} not followed`, false, status));
      } else {
        const retryAfterMs = status === 429 || status === 503 ? parseRetryAfter(res.headers['retry-after']) : null;
        finish({ ...failed(`HTTP ${status}`, false, status), retryAfterMs });
      }
    });
    request.on('error', (err: NodeJS.ErrnoException) => {
      if (err instanceof ForbiddenAddressError) return finish(failed(err.message, true));
      finish(failed(describe(err)));
    });
    request.end(req.body);
  });
}

function describe(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ECONNRESET':
      return 'connection reset by the receiver';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `DNS lookup failed (${err.code})`;
    case 'ETIMEDOUT':
      return 'connection timed out';
    default:
      return err.code ? `${err.code}: ${err.message}` : err.message;
  }
}

/**
 * An HTTP date in one of the three forms RFC 9110 (5.6.7) has recipients
 * accept: IMF-fixdate, and the obsolete RFC 850 and asctime forms. Anything
 * else is not read: Date.parse alone takes almost any text with a year in it
 * (`soon 2030`) as a date.
 */
const HTTP_DATE = [
  /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/,
  /^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), \d{2}-(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d{2} \d{2}:\d{2}:\d{2} GMT$/,
];
const ASCTIME = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/;

/** `Retry-After` in seconds or as an HTTP date; null when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | null {
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  // asctime has no zone: it is GMT, which Date.parse would not assume.
  const text = HTTP_DATE.some((form) => form.test(trimmed)) ? trimmed : ASCTIME.test(trimmed) ? `${trimmed} GMT` : undefined;
  if (text === undefined) return null;
  const at = Date.parse(text);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}
