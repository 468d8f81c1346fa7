import { InferApiError, InferArgumentError, InferTimeoutError, type ProblemDetails } from './errors.js';
import { linkAbort } from './abort-links.js';
import { keepAnswerText } from './answer-text.js';
import { jsonText } from './json-text.js';
import { parseRetryAfter } from './retry-after.js';

export interface TransportOptions {
  baseUrl: string;
  apiKey: string;
  /** Sent instead of `apiKey` on requests marked `admin`; absent: `apiKey` is sent. */
  adminKey?: string | undefined;
  fetch: typeof fetch;
  timeoutMs: number;
  maxRetries: number;
  maxRetryDelayMs: number;
}

export interface RequestOptions {
  /** @default 'GET' */
  method?: 'GET' | 'POST' | 'PUT';
  /** An admin route (ADMIN_API_KEYS): sent with the client's `adminKey` when it has one. */
  admin?: boolean;
  query?: Record<string, string | number | undefined>;
  headers?: Record<string, string>;
  /** A JSON body. */
  json?: unknown;
  /** A streamed body; sent with `duplex: 'half'` and never retried (it cannot be replayed). */
  stream?: { body: ReadableStream<Uint8Array>; contentType: string };
  /**
   * Time the server may hold the request on purpose (`Prefer: wait`), added to
   * the client's `timeoutMs` so a long poll is not mistaken for a hang.
   */
  holdMs?: number;
  /** Overrides the client's `timeoutMs`; `null` for no deadline (an upload of unknown length). */
  timeoutMs?: number | null;
  /**
   * The whole call's deadline, for a request made on behalf of `wait` or
   * `run`: no attempt outlasts `at` (a `Date.now()` time) and no retry pause
   * crosses it; past it, InferTimeoutError with `message`.
   */
  deadline?: { at: number; message: string };
  /** Called with a successful response before its body is read (to read its headers). */
  onResponse?: (res: Response) => void;
  signal?: AbortSignal | undefined;
  /**
   * Retry 429 and 503 after `Retry-After`. Only for requests that are safe to
   * repeat. @default true for GET, false otherwise
   */
  retry?: boolean;
}

const USER_AGENT = 'infer-sdk/0.1.0';

/**
 * One HTTP exchange with the gateway: auth, deadline, problem+json errors and
 * bounded retries. Resource classes (jobs, batches, …) say only what to send.
 */
export class Transport {
  readonly #options: TransportOptions;
  readonly #base: string;

  constructor(options: TransportOptions) {
    checkHeaderValue('apiKey', options.apiKey);
    checkHeaderValue('adminKey', options.adminKey);
    const base = URL.parse(options.baseUrl);
    // fetch refuses a URL with credentials, at every call: say so once, here, without echoing them.
    if (base && (base.username || base.password)) {
      throw new InferArgumentError('baseUrl carries credentials (user:password@), which fetch refuses: the API key goes in apiKey');
    }
    this.#options = options;
    // String concatenation, not `new URL(path, base)`: a base with a path prefix keeps it.
    this.#base = options.baseUrl.replace(/\/+$/, '');
  }

  /** Send and parse a JSON answer; one holding an integer too long for a double keeps its text (answerText). */
  async json<T>(path: string, options: RequestOptions = {}): Promise<T> {
    return this.#send(path, options, 'application/json', async (res) => {
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        // A 2xx that is not JSON is not the platform answering (a web server or proxy at baseUrl, say).
        throw this.notThePlatform(res, path, options, 'JSON');
      }
      return keepAnswerText(parsed, text) as T;
    });
  }

  /** The error for a 2xx answer that is not what the platform sends (`what`: JSON, NDJSON). */
  notThePlatform(res: Response, path: string, options: Pick<RequestOptions, 'method' | 'query'>, what: string): InferApiError {
    return new InferApiError(
      {
        type: 'about:blank',
        title: res.statusText,
        status: res.status,
        detail: `the answer to ${options.method ?? 'GET'} ${path} is not ${what} (${res.headers.get('content-type') ?? 'no content type'}): is ${this.#base} the platform's gateway?`,
        code: 'invalid_response',
      },
      { method: options.method ?? 'GET', url: this.#url(path, options.query) },
    );
  }

  /**
   * Send and hand back the response with its body unread, for streamed answers.
   * The deadline covers only the wait for the headers; the caller owns the body.
   */
  async raw(path: string, options: RequestOptions = {}, accept = '*/*'): Promise<Response> {
    return this.#send(path, options, accept, (res) => Promise.resolve(res), true);
  }

  #url(path: string, query: RequestOptions['query']): string {
    let url = this.#base + path;
    if (query) {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
      const qs = params.toString();
      if (qs) url += `?${qs}`;
    }
    return url;
  }

  async #send<T>(
    path: string,
    options: RequestOptions,
    accept: string,
    read: (res: Response) => Promise<T>,
    /** Whether `read` hands the body on unread (raw), so the caller's signal must still reach it afterwards. */
    streamed = false,
  ): Promise<T> {
    const method = options.method ?? 'GET';
    refuseUnsendableSegments(method, path);
    const url = this.#url(path, options.query);
    const retry = options.retry ?? method === 'GET';
    const headers: Record<string, string> = {
      authorization: `Bearer ${options.admin ? (this.#options.adminKey ?? this.#options.apiKey) : this.#options.apiKey}`,
      accept,
      'user-agent': USER_AGENT,
      ...options.headers,
    };
    let body: string | ReadableStream<Uint8Array> | undefined;
    if (options.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = jsonText(options.json);
    } else if (options.stream) {
      headers['content-type'] = options.stream.contentType;
      body = options.stream.body;
    }
    const baseTimeout = options.timeoutMs === undefined ? this.#options.timeoutMs : options.timeoutMs;
    const timeoutMs = baseTimeout === null ? null : baseTimeout + (options.holdMs ?? 0);

    const deadline = options.deadline?.at ?? Infinity;
    // `cause`: the error answer whose retry would have ended past the deadline.
    const pastDeadline = (cause?: unknown) => new InferTimeoutError(options.deadline?.message ?? `${method} ${url}: past its deadline`, cause === undefined ? undefined : { cause });

    for (let attempt = 0; ; attempt++) {
      const leftMs = deadline - Date.now();
      if (leftMs <= 0) throw pastDeadline();
      // The request's own deadline, cut to what is left of the call's.
      const attemptMs = timeoutMs === null ? leftMs : Math.min(timeoutMs, leftMs);
      const controller = new AbortController();
      let timedOut = false;
      // Node fires a timer of 2^31 ms or more after 1 ms: a timeout that long is no timeout.
      const timer = attemptMs <= LONGEST_TIMER_MS
        ? setTimeout(() => {
            timedOut = true;
            controller.abort();
          }, attemptMs)
        : undefined;
      const unlink = linkAbort(options.signal, controller);
      // A streamed answer's body is read after this returns: the caller's abort must still reach it then.
      let bodyHandedOver = false;
      const signal = controller.signal;
      try {
        const init: RequestInit = { method, headers, signal };
        if (body !== undefined) init.body = body;
        // Node's fetch refuses a stream body without it; half duplex is all HTTP/1.1 offers anyway.
        if (body instanceof ReadableStream) init.duplex = 'half';
        const res = await this.#options.fetch(url, init);
        if (!res.ok) {
          const error = await toApiError(res, method, url, signal);
          // A stream body is spent after one try, so it is never retried.
          const delayMs = retry && !(body instanceof ReadableStream) ? this.#retryDelayMs(error, attempt) : undefined;
          if (delayMs === undefined) throw error;
          // A pause that would end past the call's deadline is not taken: the call cannot end in time.
          if (Date.now() + delayMs >= deadline) throw pastDeadline(error);
          clearTimeout(timer);
          await sleep(delayMs, options.signal);
          continue;
        }
        options.onResponse?.(res);
        // A streamed answer's deadline ends with its headers (the finally below); the caller owns the body.
        bodyHandedOver = streamed;
        return await read(streamed ? unlinkWhenRead(res, unlink) : res);
      } catch (err) {
        if (timedOut) throw attemptMs === timeoutMs ? new InferTimeoutError(`${method} ${url} took longer than ${timeoutMs} ms`) : pastDeadline();
        throw err;
      } finally {
        clearTimeout(timer);
        // A streamed body stays linked until it has been read, failed or been cancelled (unlinkWhenRead).
        if (!bodyHandedOver) unlink();
      }
    }
  }

  /** How long to wait before retrying `error`, or undefined not to retry. */
  #retryDelayMs(error: InferApiError, attempt: number): number | undefined {
    if (error.status !== 429 && error.status !== 503) return undefined;
    if (attempt >= this.#options.maxRetries) return undefined;
    // Without Retry-After: exponential from 500 ms with jitter, so a crowd of clients spreads out.
    const delayMs =
      error.retryAfter !== undefined ? error.retryAfter * 1000 : 500 * 2 ** attempt * (0.5 + Math.random() / 2);
    // A server asking for longer than we are willing to wait gets the error back at once.
    return delayMs <= this.#options.maxRetryDelayMs ? delayMs : undefined;
  }
}

/**
 * The response with its body passed through, unlinked from the caller's
 * signal once it has been read to its end, has failed, or was cancelled: the
 * caller's abort reaches the body while it is read, and a long-lived signal
 * keeps nothing once it is done.
 */
function unlinkWhenRead(res: Response, unlink: () => void): Response {
  if (!res.body) {
    unlink();
    return res;
  }
  const reader = res.body.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          unlink();
          controller.close();
        } else {
          controller.enqueue(value);
        }
      } catch (err) {
        unlink();
        controller.error(err);
      }
    },
    cancel(reason) {
      unlink();
      return reader.cancel(reason);
    },
  });
  return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
}

/** The longest delay Node's timers keep: a longer one fires after 1 ms. */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/** A timer that an AbortSignal cuts short (rejecting with the signal's reason). Longer than LONGEST_TIMER_MS sleeps that long. */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    // Through linkAbort, as a request is: many calls pausing on one signal at once add one listener to it, not one each.
    const controller = new AbortController();
    const unlink = linkAbort(signal, controller);
    const timer = setTimeout(() => {
      unlink();
      resolve();
    }, Math.min(ms, LONGEST_TIMER_MS));
    controller.signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(controller.signal.reason);
      },
      { once: true },
    );
  });
}

/**
 * Refuse a path with an empty, `.` or `..` segment (an id or name given as
 * one): fetch would resolve it to another route, `/v1/models/.` to the list
 * of every model. The builders encode each id with encodeURIComponent, which
 * leaves dots alone, and `%2E` is a dot segment to the URL parser too.
 */
function refuseUnsendableSegments(method: string, path: string): void {
  const segments = path.split('?', 1)[0]!.split('/').slice(1);
  const bad = segments.find((s) => s === '' || s === '.' || s === '..');
  if (bad !== undefined) throw new InferArgumentError(`${method} ${path}: an id or name cannot be ${bad === '' ? 'empty' : JSON.stringify(bad)}`);
}

/**
 * Read an error response into an InferApiError, problem+json or not (a proxy's
 * HTML page, say). A body that breaks off leaves the status alone, unless the
 * call was aborted (or timed out) while it came: that is the call's own end.
 */
async function toApiError(res: Response, method: string, url: string, signal: AbortSignal): Promise<InferApiError> {
  const text = await res.text().catch((err: unknown) => {
    if (signal.aborted) throw err;
    return '';
  });
  let problem: Partial<ProblemDetails> = {};
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null) problem = parsed as Partial<ProblemDetails>;
  } catch {
    // not JSON: keep the text as the detail below
  }
  return new InferApiError(
    {
      type: typeof problem.type === 'string' ? problem.type : 'about:blank',
      title: typeof problem.title === 'string' ? problem.title : res.statusText,
      status: res.status,
      detail: typeof problem.detail === 'string' ? problem.detail : text.slice(0, 500) || res.statusText,
      code: typeof problem.code === 'string' ? problem.code : 'http_error',
    },
    { retryAfter: parseRetryAfter(res.headers.get('retry-after')), method, url },
  );
}

/**
 * A key goes out as `Authorization: Bearer <key>`: a character a header
 * cannot carry (a line break, one past Latin-1, as a key pasted from a
 * document may hold) would make fetch throw at every call, with the whole
 * header, key and all, in its message. Refused here, the key not echoed.
 */
function checkHeaderValue(name: string, value: string | undefined): void {
  if (value === undefined) return;
  const at = value.search(/[^\t\x20-\x7e\x80-\xff]/);
  if (at >= 0) throw new InferArgumentError(`${name} holds a character an HTTP header cannot carry, at index ${at}`);
}
