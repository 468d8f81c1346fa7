import type { IncomingMessage } from 'node:http';
import zlib from 'node:zlib';
import { AppError, badRequest } from '@infer/errors';

/**
 * Request bodies with a Content-Encoding, the same for every route that
 * reads one (`POST /v1/jobs`, both forms of `POST /v1/batches`):
 *
 * - no header, or `identity` (any case): the bytes as sent;
 * - `gzip` (or `x-gzip`), `deflate`, `br`: undone as they stream;
 * - anything else, a list of codings included: 415 `unsupported_media_type`,
 *   before a byte is read (RFC 9110 §15.5.16 names 415 for a content coding
 *   the server does not take);
 * - bytes that do not decode (not gzip, cut off, a broken brotli stream), or
 *   a body that ends early: 400 `invalid_json`, like any body that cannot
 *   be read as JSON.
 *
 * Limits apply to the decoded bytes (the caller counts what it reads), so a
 * small compressed body that inflates past the limit is refused as it grows.
 */
export type ContentCoding = 'identity' | 'gzip' | 'deflate' | 'br';

/** Codings the gateway takes, as named in errors and docs. */
export const SUPPORTED_CODINGS = 'gzip, deflate, br';

/** The request's Content-Encoding, or 415. */
export function contentCoding(header: string | undefined): ContentCoding {
  if (header === undefined) return 'identity';
  const coding = header.trim().toLowerCase();
  if (coding === '' || coding === 'identity') return 'identity';
  if (coding === 'gzip' || coding === 'x-gzip') return 'gzip';
  if (coding === 'deflate' || coding === 'br') return coding;
  // The header comes back in the message: bounded, so a 16 KiB header is not echoed whole.
  const shown = header.length > 40 ? `${header.slice(0, 37)}...` : header;
  return unsupported(shown);
}

function unsupported(shown: string): never {
  throw new AppError(415, 'unsupported_media_type', `Content-Encoding "${shown}" is not supported (${SUPPORTED_CODINGS}, or none)`);
}

function decompressor(coding: Exclude<ContentCoding, 'identity'>): zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress {
  if (coding === 'gzip') return zlib.createGunzip();
  if (coding === 'deflate') return zlib.createInflate();
  return zlib.createBrotliDecompress();
}

/**
 * The request's body, decoded, a piece at a time. Any failure to read it
 * (bytes that do not decode, a client gone mid-body) is a 400 AppError, so
 * it reaches the problem answer as a client error and never as a 500.
 *
 * When the consumer stops early (a limit, a refused upload), the
 * decompressor is dropped and the request paused, not destroyed: the
 * answer still has a socket to go out on.
 */
export async function* decodedBody(req: IncomingMessage, coding: ContentCoding = contentCoding(req.headers['content-encoding'])): AsyncGenerator<Buffer> {
  if (coding === 'identity') {
    try {
      for await (const piece of req) yield piece as Buffer;
    } catch (err) {
      throw unreadable(coding, err);
    }
    return;
  }
  const inflate = decompressor(coding);
  // pipe() does not pass the source's errors on: without this a client
  // that goes away mid-body would leave the decompressor waiting forever.
  const gone = (err?: Error) => inflate.destroy(err ?? new Error('the request was aborted'));
  req.once('error', gone);
  req.once('aborted', gone);
  req.pipe(inflate);
  try {
    for await (const piece of inflate) yield piece as Buffer;
  } catch (err) {
    throw unreadable(coding, err);
  } finally {
    req.off('error', gone);
    req.off('aborted', gone);
    req.unpipe(inflate);
    inflate.destroy();
    if (!req.readableEnded) req.pause();
  }
}

function unreadable(coding: ContentCoding, err: unknown): AppError {
  if (err instanceof AppError) return err;
  const why = err instanceof Error ? err.message : String(err);
  return coding === 'identity'
    ? badRequest('invalid_json', `The body could not be read: ${why}`)
    : badRequest('invalid_json', `The body is not valid ${coding} (Content-Encoding): ${why}`);
}

/**
 * The body's pieces while it arrives within `ms` of this call; past that, a
 * `408 request_timeout` (a client too slow to send it whole: its answer is
 * a problem like any other, not the bare 408 Node's own requestTimeout
 * sends later, as a backstop). The source is let go, not awaited: its read
 * may be waiting on a silent client, and ends when the connection closes.
 */
export async function* withinTimeLimit(body: AsyncIterable<Buffer>, ms: number): AsyncGenerator<Buffer> {
  const source = body[Symbol.asyncIterator]();
  let expired: AppError | undefined;
  // The read in progress, for the timer to cut short. Not a race of every read against one promise that
  // lives as long as the upload: each race would leave a reaction on it that holds that read's piece, and
  // so the whole body (a gzip bomb's gigabyte) until the upload ended.
  let cut: ((err: AppError) => void) | undefined;
  const timer = setTimeout(() => {
    expired = new AppError(408, 'request_timeout', `The body did not arrive whole within ${Math.round(ms / 1000)} s; nothing of it was kept. Send less at a time (split the file into batches of their own)`);
    cut?.(expired);
  }, ms);
  let done = false;
  try {
    for (;;) {
      if (expired) throw expired;
      const next = await new Promise<IteratorResult<Buffer>>((resolve, reject) => {
        cut = reject;
        source.next().then(resolve, reject);
      });
      cut = undefined;
      if (next.done) {
        done = true;
        return;
      }
      yield next.value;
    }
  } finally {
    clearTimeout(timer);
    if (!done) source.return?.(undefined)?.catch(() => undefined);
  }
}
