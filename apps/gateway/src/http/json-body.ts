import { isUtf8 } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import type { RequestHandler } from 'express';
import { AppError, badRequest } from '@infer/errors';
import { liftBase64, tensorBuffers, type LiftedBody } from '@infer/tensors';
import { contentCoding, decodedBody } from './content-encoding.js';

declare module 'express-serve-static-core' {
  interface Request {
    /** The `"b64"` values decoded from the body's bytes (see liftBase64), for the route to resolve. */
    liftedBase64?: LiftedBody;
  }
}

export interface JsonBodyOptions {
  /**
   * Decode long `"b64"` values from the bytes (liftBase64): only for a
   * route that resolves their placeholders (`POST /v1/jobs`).
   * @default true
   */
  liftBase64?: boolean;
}

/**
 * The JSON body of a route, read with as little as it takes: the bytes
 * (decoded when they have a Content-Encoding, see content-encoding.ts), one
 * JSON.parse, into `req.body`. express.json() does the same through
 * content-type and charset negotiation that costs more than the rest of a
 * small submit, and answers a body that does not decompress with an error
 * the problem answer cannot tell from a bug.
 *
 * Any content type is read as JSON: `curl -d` sends form-encoded by default.
 * An empty body is `{}`, as express.json() makes it.
 */
export function jsonBody(maxBytes: number, options: JsonBodyOptions = {}): RequestHandler {
  return (req, _res, next) => {
    readJsonBody(req, maxBytes, options).then(({ value, lifted }) => {
      req.body = value;
      if (lifted) req.liftedBase64 = lifted;
      next();
    }, next);
  };
}

/**
 * A body read and parsed: 415 for a Content-Encoding the gateway does not
 * take, 413 past `maxBytes` (decoded), 400 when it does not decode or is
 * not UTF-8 JSON. Long `"b64"` values are decoded from the bytes on the way
 * (liftBase64) unless `liftBase64: false`: `lifted` resolves their placeholders.
 */
export async function readJsonBody(req: IncomingMessage, maxBytes: number, options: JsonBodyOptions = {}): Promise<{ value: unknown; lifted: LiftedBody | undefined }> {
  const coding = contentCoding(req.headers['content-encoding']);
  let bytes: Buffer;
  if (coding === 'identity') {
    if (Number(req.headers['content-length']) > maxBytes) throw tooLarge(maxBytes);
    bytes = await readBody(req, maxBytes);
  } else {
    bytes = await readDecoded(decodedBody(req, coding), maxBytes);
  }
  if (bytes.length === 0) return { value: {}, lifted: undefined };
  // JSON is UTF-8 (RFC 8259 §8.1); decoding would turn other bytes into U+FFFD and accept what was never sent.
  if (!isUtf8(bytes)) throw badRequest('invalid_json', 'The body is not valid UTF-8');
  const lifted = options.liftBase64 === false ? undefined : liftBase64(bytes);
  let text = lifted ? lifted.text : bytes.toString('utf8');
  // A byte order mark is not JSON, but editors write one (RFC 8259 §8.1 lets a parser skip it).
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    return { value: JSON.parse(text) as unknown, lifted: lifted?.bytes.length ? lifted : undefined };
  } catch {
    throw badRequest('invalid_json', 'The body is not valid JSON');
  }
}

/** A decoded body up to `maxBytes` of decoded bytes; reading stops at the first byte over (413). */
async function readDecoded(pieces: AsyncGenerator<Buffer>, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const piece of pieces) {
    length += piece.length;
    // Leaving the loop closes the decoder: a compressed bomb stops inflating here.
    if (length > maxBytes) throw tooLarge(maxBytes);
    chunks.push(piece);
  }
  return joined(chunks, length);
}

/** A body's chunks as one buffer, from tensorBuffers: the route that lifted base64 from it hands it back (LiftedBody.releaseBody). */
function joined(chunks: readonly Buffer[], length: number): Buffer {
  const out = tensorBuffers.acquire(length);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

const tooLarge = (maxBytes: number) => new AppError(413, 'payload_too_large', `The body is larger than the limit of ${maxBytes} bytes`);

function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const onData = (chunk: Buffer) => {
      length += chunk.length;
      if (length > maxBytes) {
        cleanup();
        // Stop reading: the answer is 413, and the rest of the body is not wanted.
        req.unpipe();
        req.pause();
        reject(tooLarge(maxBytes));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : joined(chunks, length));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(badRequest('invalid_json', `The body could not be read: ${err.message}`));
    };
    const onAborted = () => {
      cleanup();
      reject(badRequest('invalid_json', 'The request was aborted before the body was read'));
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}
