import type { Job, JobStatus } from '@infer/contract';
import { InferTimeoutError } from './errors.js';
import { sleep, type RequestOptions, type Transport } from './http.js';
import type { CallOptions } from './models.js';
import type { CreateJobParams } from './types.js';

/**
 * The longest `Prefer: wait` every gateway honours (its MAX_WAIT_SECONDS by
 * default, docs/api.md): what `wait` and `run` ask for in each long poll.
 */
export const MAX_WAIT_SECONDS = 60;

/**
 * How much sooner than a `run`'s deadline the gateway is asked to answer its
 * submit: the answer's way back. Held to the deadline itself, the SDK's own
 * timer (started a moment later, with no network to cross) aborts first,
 * and the job's id is never read.
 */
function answerMarginMs(remainingMs: number): number {
  return Math.min(2000, Math.max(250, remainingMs / 10));
}

/** The most a gateway may be set to honour (MAX_WAIT_SECONDS up to 600): a longer `wait` asked for is cut to it. */
const LONGEST_WAIT_SECONDS = 600;

const ENDED: readonly JobStatus[] = ['succeeded', 'failed', 'canceled'];

export function isJobEnded(job: Pick<Job, 'status'>): boolean {
  return ENDED.includes(job.status);
}

/**
 * A `Cancel-After` deadline: seconds as a number (fractions allowed, sent to
 * the millisecond), or the header's own duration text (`'30s'`, `'5m'`,
 * `'1h30m'`, `'250ms'`), sent as it is. More than 0 and at most 24 h; the
 * gateway checks it (400 `invalid_input`), so the SDK does not.
 */
export type CancelAfter = number | string;

export interface CreateJobOptions extends CallOptions {
  /** Hold the response until the job ends or this many seconds pass (`Prefer: wait=N`, at most 60). */
  wait?: number;
  /** The same key from the same tenant within 24 h returns the first job instead of a new one. */
  idempotencyKey?: string;
  /**
   * A job still queued this long after it is accepted ends `canceled`, with
   * `error.code` `deadline_exceeded`, and never runs; one a worker has
   * started by then finishes. For work that is worthless late: the answer to
   * a user who has gone, say.
   */
  cancelAfter?: CancelAfter;
}

export interface GetJobOptions extends CallOptions {
  /** Long poll: hold the response until the job ends or this many seconds pass (at most 60). */
  wait?: number;
}

export interface WaitJobOptions extends CallOptions {
  /** Give up (InferTimeoutError) after this long. @default no limit */
  timeoutMs?: number;
}

export interface RunJobOptions extends WaitJobOptions {
  idempotencyKey?: string;
  /**
   * As in `create`. A job that misses it resolves `canceled` with
   * `error.code` `deadline_exceeded`, like any other ended job, rather than
   * throwing: set it below `timeoutMs` to learn that the job never ran.
   */
  cancelAfter?: CancelAfter;
}

function preferWait(wait: number | undefined): Pick<RequestOptions, 'headers' | 'holdMs'> {
  if (wait === undefined) return {};
  // The gateway cuts it to its own MAX_WAIT_SECONDS and says so (Preference-Applied).
  const seconds = Math.max(0, Math.min(LONGEST_WAIT_SECONDS, wait));
  return { headers: { prefer: `wait=${Number(seconds.toFixed(3))}` }, holdMs: seconds * 1000 };
}

/**
 * Seconds become whole milliseconds: the header takes at most three decimals, and `ms` needs none.
 * Rounded up, as the gateway rounds its own: any duration more than 0 stays more than 0.
 */
function cancelAfterHeader(value: CancelAfter): string {
  // Through whole microseconds first: 2.007 * 1000 is 2007.0000000000002, which is not a millisecond more.
  return typeof value === 'string' ? value : `${Math.ceil(Math.round(value * 1e6) / 1000)}ms`;
}

/** `Preference-Applied: wait=N` as seconds; undefined when absent or of another form. */
function appliedWaitSeconds(header: string | null): number | undefined {
  const match = header === null ? null : /(?:^|[\s,;])wait=(\d+(?:\.\d+)?)/i.exec(header);
  return match ? Number(match[1]) : undefined;
}

/**
 * The contract's Idempotency-Key: 1-255 visible ASCII characters. Checked
 * here because fetch refuses some others (non-Latin-1) with a bare TypeError
 * before sending, and would send the rest for a 400.
 */
function checkedIdempotencyKey(key: string): string {
  if (!/^[\x21-\x7e]{1,255}$/.test(key)) {
    throw new TypeError(`idempotencyKey must be 1 to 255 visible ASCII characters (no spaces), got ${JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…` : key)}`);
  }
  return key;
}

export class Jobs {
  readonly #http: Transport;

  constructor(http: Transport) {
    this.#http = http;
  }

  /**
   * Submit one instance. Without `wait`, answers at once with the queued job;
   * with it, with the ended job if it ended in time.
   */
  async create(body: CreateJobParams, options: CreateJobOptions = {}): Promise<Job> {
    return this.#create(body, options, undefined);
  }

  #create(body: CreateJobParams, options: CreateJobOptions, deadline: RequestOptions['deadline']): Promise<Job> {
    const wait = preferWait(options.wait);
    const headers = { ...wait.headers };
    if (options.idempotencyKey !== undefined) headers['idempotency-key'] = checkedIdempotencyKey(options.idempotencyKey);
    if (options.cancelAfter !== undefined) headers['cancel-after'] = cancelAfterHeader(options.cancelAfter);
    return this.#http.json<Job>('/v1/jobs', {
      method: 'POST',
      json: body,
      headers,
      holdMs: wait.holdMs ?? 0,
      signal: options.signal,
      // Safe to repeat only when the server deduplicates it.
      retry: options.idempotencyKey !== undefined,
      ...(deadline === undefined ? {} : { deadline }),
    });
  }

  get(id: string, options: GetJobOptions = {}): Promise<Job> {
    return this.#get(id, options, {});
  }

  #get(id: string, options: GetJobOptions, extra: Pick<RequestOptions, 'deadline' | 'onResponse'>): Promise<Job> {
    return this.#http.json<Job>(`/v1/jobs/${encodeURIComponent(id)}`, { ...preferWait(options.wait), signal: options.signal, ...extra });
  }

  /** Cancel a queued or running job; 409 `conflict` if it has already ended. */
  cancel(id: string, options: CallOptions = {}): Promise<Job> {
    return this.#http.json<Job>(`/v1/jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST', signal: options.signal });
  }

  /**
   * Resolve with the job once it has ended, by back-to-back long polls: the
   * server answers the moment the job ends, so there is no polling interval
   * to tune and no request while nothing changes.
   */
  async wait(id: string, options: WaitJobOptions = {}): Promise<Job> {
    try {
      return await this.#waitFor(id, options);
    } catch (err) {
      // A long poll's own deadline throws from the request: name the job there too.
      if (err instanceof InferTimeoutError && err.jobId === undefined) throw new InferTimeoutError(err.message, { cause: err.cause, jobId: id });
      throw err;
    }
  }

  async #waitFor(id: string, options: WaitJobOptions): Promise<Job> {
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    const message = `job ${id} did not end within ${options.timeoutMs} ms`;
    let backoffMs = 250;
    for (;;) {
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) throw new InferTimeoutError(message, { jobId: id });
      const waitSeconds = Math.min(MAX_WAIT_SECONDS, remainingMs / 1000);
      const started = Date.now();
      let applied: number | undefined;
      const job = await this.#get(id, { wait: waitSeconds, signal: options.signal }, {
        deadline: { at: deadline, message },
        onResponse: (res) => (applied = appliedWaitSeconds(res.headers.get('preference-applied'))),
      });
      if (isJobEnded(job)) return job;
      // The wait the server held for: what it says it applied (a gateway may
      // cap Prefer: wait below 60 s), or what was asked for when it says nothing.
      const heldMs = Math.min(waitSeconds, applied ?? waitSeconds) * 1000;
      // A server that answered well before that (a proxy that strips Prefer,
      // say, or one capped to 0) gets a growing pause instead of a busy loop.
      if (heldMs === 0 || Date.now() - started < heldMs / 2) {
        await sleep(Math.min(backoffMs, Math.max(0, deadline - Date.now())), options.signal);
        backoffMs = Math.min(backoffMs * 2, 5000);
      } else {
        backoffMs = 250;
      }
    }
  }

  /** Submit and resolve with the ended job (succeeded, failed or canceled). */
  async run(body: CreateJobParams, options: RunJobOptions = {}): Promise<Job> {
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    const remainingMs = () => deadline - Date.now();
    const job = await this.#create(
      body,
      {
        // Held a little short of the deadline, so that a job still queued or running comes back before it
        // (its id, for the error that names it); fractional: a whole second rounded up would hold past it.
        wait: Math.min(MAX_WAIT_SECONDS, Math.max(0, remainingMs() - answerMarginMs(remainingMs())) / 1000),
        idempotencyKey: options.idempotencyKey,
        cancelAfter: options.cancelAfter,
        signal: options.signal,
      },
      options.timeoutMs === undefined ? undefined : { at: deadline, message: `the job did not end within ${options.timeoutMs} ms` },
    );
    if (isJobEnded(job)) return job;
    try {
      return await this.wait(job.id, {
        timeoutMs: options.timeoutMs === undefined ? undefined : Math.max(1, remainingMs()),
        signal: options.signal,
      });
    } catch (err) {
      // wait() names what was left of the deadline; the caller asked for the whole of it.
      if (err instanceof InferTimeoutError) throw new InferTimeoutError(`job ${job.id} did not end within ${options.timeoutMs} ms`, { cause: err.cause, jobId: job.id });
      throw err;
    }
  }
}
