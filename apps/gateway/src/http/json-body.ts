import type { IncomingMessage } from 'node:http';
import express, { type RequestHandler } from 'express';
import { AppError, badRequest } from '@infer/errors';
import { liftBase64, type LiftedBody } from '@infer/tensors';

declare module 'express-serve-static-core' {
  interface Request {
    /** The `"b64"` values decoded from the body's bytes (see liftBase64), for the route to resolve. */
    liftedBase64?: LiftedBody;
  }
}

/**
 * The JSON body of a hot route, read with as little as it takes: the bytes,
 * one JSON.parse, into `req.body`. express.json() does the same through
 * content-type, charset and encoding negotiation that costs more than the
 * rest of a small submit; it is still used for bodies with a
 * Content-Encoding (gzip, deflate), which it knows how to undo.
 *
 * Any content type is read as JSON: `curl -d` sends form-encoded by default.
 * An empty body is `{}`, as express.json() makes it.
 */
export function jsonBody(maxBytes: number): RequestHandler {
  const encoded = express.json({ limit: maxBytes, type: () => true, strict: false });
  return (req, res, next) => {
    const encoding = req.headers['content-encoding'];
    if (encoding && encoding !== 'identity') return encoded(req, res, next);
    readJsonBody(req, maxBytes).then(({ value, lifted }) => {
      req.body = value;
      if (lifted) req.liftedBase64 = lifted;
      next();
    }, next);
  };
}

/**
 * A body without Content-Encoding, read and parsed: 413 past `maxBytes`,
 * 400 when it is not JSON. Long `"b64"` values are decoded from the bytes
 * on the way (liftBase64): `lifted` resolves their placeholders.
 */
export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<{ value: unknown; lifted: LiftedBody | undefined }> {
  if (Number(req.headers['content-length']) > maxBytes) throw tooLarge(maxBytes);
  const bytes = await readBody(req, maxBytes);
  if (bytes.length === 0) return { value: {}, lifted: undefined };
  const lifted = liftBase64(bytes);
  try {
    return { value: JSON.parse(lifted.text) as unknown, lifted: lifted.bytes.length ? lifted : undefined };
  } catch {
    throw badRequest('invalid_json', 'The body is not valid JSON');
  }
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
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length));
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
