import type { ServerResponse } from 'node:http';
import type { Writable } from 'node:stream';
import zlib from 'node:zlib';

/*
 * Streamed answers (a batch's results file, a job with large outputs): pieces
 * written as the socket takes them, gzip-compressed when the client takes it.
 */

/**
 * Resolves when `sink` (the response, or the compressor writing into it)
 * can take more writes, or the response is gone: what a streamed answer
 * waits on after `write` says its buffer is full. The connection's own
 * close counts too: a pipelined response still queued behind an earlier
 * one gets no 'close' of its own when the client goes (see `gone`).
 */
function drained(res: ServerResponse, sink: Writable): Promise<void> {
  const socket = res.req.socket;
  return new Promise((resolve) => {
    const done = () => {
      sink.off('drain', done);
      res.off('close', done);
      socket.off('close', done);
      resolve();
    };
    sink.on('drain', done);
    res.on('close', done);
    socket.on('close', done);
  });
}

/** Whether a streamed answer has no one left to take it: the response or its connection is gone. */
const gone = (res: ServerResponse): boolean => res.destroyed || res.req.socket.destroyed;

/**
 * How a streamed answer (a batch's results file, a job with large outputs)
 * is sent: gzip when the request's Accept-Encoding takes it, else as it
 * is. Answers of the usual size are never compressed: on the hot path the
 * compression would cost more than the bytes it saves.
 */
export type AnswerCoding = 'identity' | 'gzip';

/**
 * gzip at its fastest level: on the results of the shipped MLP it keeps
 * 2.79× of level 6's 2.91× at 2.5× its speed (88 against 35 MB/s of
 * NDJSON on one core of the 2-core benchmark machine), so the compressor
 * keeps up with a results download rather than setting its pace.
 */
const GZIP_LEVEL = zlib.constants.Z_BEST_SPEED;

/**
 * The coding a streamed answer is sent in, from the request's
 * Accept-Encoding (RFC 9110 §12.5.3): gzip when it is acceptable (`gzip`,
 * `x-gzip` or `*` with a weight above 0) and not weighted below identity
 * (an `identity` entry, else `*`'s weight); otherwise the bytes as they
 * are.
 * Codings the gateway does not compress with (`br`, `deflate`) are not
 * chosen; an answer nothing in the header accepts is sent as it is, as
 * most servers do, rather than refused with 406.
 */
export function answerCoding(header: string | readonly string[] | undefined): AnswerCoding {
  if (header === undefined) return 'identity';
  let gzip: number | undefined;
  let identity: number | undefined;
  let any: number | undefined;
  for (const entry of (typeof header === 'string' ? header : header.join(',')).split(',')) {
    const [name = '', ...params] = entry.split(';');
    const coding = name.trim().toLowerCase();
    if (coding === '') continue;
    const q = weight(params);
    if (q === undefined) continue; // a malformed weight: the entry is ignored
    if (coding === 'gzip' || coding === 'x-gzip') gzip = Math.max(gzip ?? 0, q);
    else if (coding === 'identity') identity = q;
    else if (coding === '*') any = q;
  }
  const gzipQ = gzip ?? any ?? 0;
  // `*` weighs identity too when the header does not name it.
  const identityQ = identity ?? any;
  return gzipQ > 0 && (identityQ === undefined || gzipQ >= identityQ) ? 'gzip' : 'identity';
}

/** An entry's `q` (1 when it has none), or undefined when it is not a qvalue (RFC 9110 §12.4.2). */
function weight(params: readonly string[]): number | undefined {
  for (const param of params) {
    const eq = param.indexOf('=');
    if (eq < 0 || param.slice(0, eq).trim().toLowerCase() !== 'q') continue;
    const value = param.slice(eq + 1).trim();
    return /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/.test(value) ? Number(value) : undefined;
  }
  return 1;
}

/** The headers a streamed answer in `coding` adds: its Content-Encoding, and Vary, since its bytes depend on Accept-Encoding. */
export const codingHeaders = (coding: AnswerCoding): Record<string, string> =>
  coding === 'gzip' ? { 'content-encoding': 'gzip', vary: 'Accept-Encoding' } : { vary: 'Accept-Encoding' };

/**
 * Send a streamed answer's pieces in turn, in `coding`, and end it; its
 * status and headers (codingHeaders among them) are the caller's, set
 * before. Each piece is taken only when the one before is written: after a
 * piece the socket (or the compressor) took, the event loop's other work
 * runs first (a piece is printed as it is taken, and printing is what
 * would hold other requests up); after one it did not, its drain.
 * Compression runs on libuv's thread pool, off the event loop. Stops when
 * no one is left to take the answer; a HEAD is ended at once, no piece
 * taken. True when every piece was written;
 * what a piece throws is the caller's (the compressor is dropped first).
 */
export async function sendPieces(res: ServerResponse, pieces: Iterable<string | Buffer> | AsyncIterable<string | Buffer>, coding: AnswerCoding): Promise<boolean> {
  // HEAD: the headers alone. Node drops what a HEAD answer writes without ever pushing back, so every piece
  // would be printed (a results file read from Redis, compressed) for nothing.
  if (res.req.method === 'HEAD') {
    res.end();
    return true;
  }
  if (coding === 'identity') {
    if (!(await writeEach(res, res, pieces))) return false;
    res.end();
    return true;
  }
  const gzip = zlib.createGzip({ level: GZIP_LEVEL });
  // A compressor that fails leaves the answer broken, never short: the connection goes.
  gzip.on('error', (err) => res.destroy(err));
  gzip.pipe(res);
  let written = false;
  try {
    written = await writeEach(res, gzip, pieces);
  } finally {
    if (written) gzip.end();
    else gzip.destroy();
  }
  return written;
}

async function writeEach(res: ServerResponse, sink: Writable, pieces: Iterable<string | Buffer> | AsyncIterable<string | Buffer>): Promise<boolean> {
  for await (const piece of pieces) {
    if (gone(res)) return false;
    if (sink.write(piece)) await new Promise<void>((resolve) => setImmediate(resolve));
    else await drained(res, sink);
  }
  return !gone(res);
}
