import { InferTimeoutError } from './errors.js';
import { sleep, type Transport } from './http.js';
import type { CallOptions } from './models.js';
import { isGzipFile, parseNdjson, toByteStream, type UploadSource } from './ndjson.js';
import {
  isBatchEnded,
  type Batch,
  type BatchList,
  type BatchResultLine,
  type CreateBatchParams,
  type ListBatchesParams,
  type UploadBatchParams,
} from './types.js';

export interface WaitBatchOptions extends CallOptions {
  /** Called with the batch after every poll, the last (ended) one included. */
  onProgress?: (batch: Batch) => void;
  /** Time between polls; batches have no long poll. @default 1000 */
  pollMs?: number;
  /** Give up (InferTimeoutError) after this long. @default no limit */
  timeoutMs?: number;
}

const path = (id: string, rest = '') => `/v1/batches/${encodeURIComponent(id)}${rest}`;

export class Batches {
  readonly #http: Transport;

  constructor(http: Transport) {
    this.#http = http;
  }

  /** Submit a batch whose items fit comfortably in one JSON body. */
  create(params: CreateBatchParams, options: CallOptions = {}): Promise<Batch> {
    return this.#http.json<Batch>('/v1/batches', { method: 'POST', json: params, signal: options.signal });
  }

  /**
   * Submit a batch as NDJSON, streamed: a file path is read a chunk at a time
   * as the request goes out, so its size is bounded by the server, not by
   * this process's memory. A gzip file is sent as such (`Content-Encoding:
   * gzip`, see `params.contentEncoding`). There is no deadline on the upload;
   * pass a signal to abort it.
   */
  async upload(params: UploadBatchParams, source: UploadSource, options: CallOptions = {}): Promise<Batch> {
    const body = await toByteStream(source);
    try {
      // A gzip file sent as it is would reach the gateway as one unreadable line.
      const coding = params.contentEncoding ?? (typeof source === 'string' && (await isGzipFile(source)) ? 'gzip' : 'identity');
      return await this.#http.json<Batch>('/v1/batches', {
        method: 'POST',
        query: { model: params.model, version: params.version, webhook: params.webhook },
        ...(coding !== 'identity' ? { headers: { 'content-encoding': coding } } : {}),
        stream: { body: body.stream, contentType: 'application/x-ndjson' },
        timeoutMs: null,
        signal: options.signal,
      });
    } catch (err) {
      // fetch reports a body that failed as "fetch failed": the caller gets what the source threw.
      throw body.failure ?? err;
    } finally {
      // Answered before the body was read to its end (a refusal, an abort, a connection lost): let go of the source.
      body.close();
    }
  }

  get(id: string, options: CallOptions = {}): Promise<Batch> {
    return this.#http.json<Batch>(path(id), { signal: options.signal });
  }

  /** One page of the tenant's batches. */
  list(params: ListBatchesParams = {}, options: CallOptions = {}): Promise<BatchList> {
    return this.#http.json<BatchList>('/v1/batches', {
      query: { limit: params.limit, after: params.after },
      signal: options.signal,
    });
  }

  /** Every page, following `after` from the last batch of each. */
  async *pages(params: ListBatchesParams = {}, options: CallOptions = {}): AsyncGenerator<BatchList> {
    let after = params.after;
    for (;;) {
      const page = await this.list({ limit: params.limit, after }, options);
      yield page;
      const last = page.data.at(-1);
      if (!last) return;
      // `has_more` when the server says; otherwise a short page is the last one.
      const more = page.has_more ?? (params.limit === undefined || page.data.length >= params.limit);
      if (!more) return;
      after = page.last_id ?? last.id;
    }
  }

  /** Every batch of the tenant, page after page: `for await (const b of client.batches.listAll())`. */
  async *listAll(params: ListBatchesParams = {}, options: CallOptions = {}): AsyncGenerator<Batch> {
    for await (const page of this.pages(params, options)) yield* page.data;
  }

  /** Items not yet run end `canceled`; finished results are kept. */
  cancel(id: string, options: CallOptions = {}): Promise<Batch> {
    return this.#http.json<Batch>(path(id, '/cancel'), { method: 'POST', signal: options.signal });
  }

  /**
   * The results file as bytes (NDJSON), to save as it is. 409 `conflict`
   * until the batch has ended.
   */
  async resultsStream(id: string, options: CallOptions = {}): Promise<ReadableStream<Uint8Array>> {
    const res = await this.#http.raw(path(id, '/results'), { signal: options.signal }, 'application/x-ndjson');
    // A 2xx of another type is not the platform answering (a web server or proxy at baseUrl, say): not results.
    if (!/ndjson|jsonl/i.test(res.headers.get('content-type') ?? '')) {
      await res.body?.cancel().catch(() => undefined);
      throw this.#http.notThePlatform(res, path(id, '/results'), {}, 'NDJSON');
    }
    if (!res.body) throw new Error(`GET ${path(id, '/results')} answered without a body`);
    return res.body as ReadableStream<Uint8Array>;
  }

  /**
   * The results, one parsed line at a time in submission order, read as they
   * arrive: `for await (const r of client.batches.results(id))`.
   */
  async *results(id: string, options: CallOptions = {}): AsyncGenerator<BatchResultLine> {
    yield* parseNdjson<BatchResultLine>(await this.resultsStream(id, options));
  }

  /** Poll until the batch has ended (`completed` or `canceled`) and resolve with it. */
  async wait(id: string, options: WaitBatchOptions = {}): Promise<Batch> {
    const pollMs = options.pollMs ?? 1000;
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    const message = `batch ${id} did not end within ${options.timeoutMs} ms`;
    for (;;) {
      const batch = await this.#http.json<Batch>(path(id), { signal: options.signal, deadline: { at: deadline, message } });
      options.onProgress?.(batch);
      if (isBatchEnded(batch)) return batch;
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) throw new InferTimeoutError(message);
      await sleep(Math.min(pollMs, remainingMs), options.signal);
    }
  }
}
