import { keepAnswerText } from './answer-text.js';
import { jsonText } from './json-text.js';
import type { BatchItem } from './types.js';

/**
 * A chunk of an NDJSON upload: raw text or bytes (newlines included, as they
 * are in a file), or an item object that becomes one line.
 */
export type UploadChunk = string | Uint8Array | BatchItem;

/**
 * What `batches.upload` reads from: a file path, a byte stream, or any
 * (async) iterable of chunks — a Node Readable, a generator of items, an array.
 */
export type UploadSource = string | ReadableStream<Uint8Array> | AsyncIterable<UploadChunk> | Iterable<UploadChunk>;

const encoder = new TextEncoder();

function encodeChunk(chunk: UploadChunk): Uint8Array {
  if (typeof chunk === 'string') return encoder.encode(chunk);
  if (chunk instanceof Uint8Array) return chunk;
  // jsonText, as every other body: a -0 in an item reaches the model as -0.
  return encoder.encode(`${jsonText(chunk)}\n`);
}

function isReadableStream(source: unknown): source is ReadableStream<Uint8Array> {
  return typeof (source as { getReader?: unknown }).getReader === 'function';
}

/** An upload's body over its source, and the means to let go of that source. */
export interface ByteSource {
  stream: ReadableStream<Uint8Array>;
  /**
   * Stop reading the source and let go of it (a file the SDK opened is
   * closed; an iterator's `return()` runs, so a generator's `finally` does).
   * For when the request ends before the body was read to its end: fetch
   * neither cancels a request body on an early answer nor stops reading one
   * after an abort. A caller's own ReadableStream is fetch's to cancel.
   */
  close(): void;
  /** What reading the source threw (the caller's iterator, or an item JSON cannot carry), if it threw. */
  readonly failure: unknown;
}

/**
 * A pull-based byte stream over `source`: the next chunk is read only when
 * fetch asks for it, so a file of any size streams through a bounded buffer.
 */
export async function toByteStream(source: UploadSource): Promise<ByteSource> {
  if (isReadableStream(source)) return { stream: source, close: () => undefined, failure: undefined };
  let iterable: AsyncIterable<UploadChunk> | Iterable<UploadChunk>;
  if (typeof source === 'string') {
    // Imported here, not at the top: only the file-path form needs Node's fs.
    const { createReadStream } = await import('node:fs');
    const { access } = await import('node:fs/promises');
    await access(source); // fail now, with ENOENT, rather than halfway into the request
    iterable = createReadStream(source) as AsyncIterable<Uint8Array>;
  } else {
    iterable = source;
  }
  const iterator =
    Symbol.asyncIterator in iterable ? iterable[Symbol.asyncIterator]() : (iterable as Iterable<UploadChunk>)[Symbol.iterator]();
  // `ended`: the iterator is done, or let go of, and is not to be touched again.
  let ended = false;
  let failure: unknown;
  const letGo = async (reason?: unknown) => {
    if (ended) return;
    ended = true;
    await iterator.return?.(reason);
  };
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (ended) return controller.close();
      let bytes: Uint8Array | undefined;
      try {
        const { done, value } = await iterator.next();
        if (!done) bytes = encodeChunk(value);
      } catch (err) {
        failure = err;
        ended = true;
        throw err;
      }
      if (bytes === undefined) {
        ended = true;
        controller.close();
      } else if (ended) {
        controller.close(); // let go of while this chunk was being read
      } else {
        controller.enqueue(bytes);
      }
    },
    async cancel(reason) {
      await letGo(reason);
    },
  });
  return {
    stream,
    // Not awaited: an async generator runs return() only after the next() in progress, which a stalled source never ends.
    close: () => void letGo().catch(() => undefined),
    get failure() {
      return failure;
    },
  };
}

/**
 * Whether the file at `path` starts with gzip's magic bytes (1f 8b): a `.gz`
 * file, whatever its name. A pipe (a FIFO, a shell's `<(zcat …)`) is not
 * looked into: the bytes read would be gone from the upload.
 */
export async function isGzipFile(path: string): Promise<boolean> {
  const { open, stat } = await import('node:fs/promises');
  if (!(await stat(path)).isFile()) return false;
  const file = await open(path, 'r');
  try {
    const head = new Uint8Array(2);
    const { bytesRead } = await file.read(head, 0, 2, 0);
    return bytesRead === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } finally {
    await file.close();
  }
}

/**
 * Parse an NDJSON byte stream one line at a time, holding at most one partial
 * line. Breaking out of the loop cancels the stream and frees the connection.
 */
export async function* parseNdjson<T>(body: ReadableStream<Uint8Array>): AsyncGenerator<T> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const lines = (buffered + decoder.decode(value, { stream: true })).split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) yield keepAnswerText(JSON.parse(line), line) as T;
    }
    const last = (buffered + decoder.decode()).trim();
    if (last) yield keepAnswerText(JSON.parse(last), last) as T;
    finished = true;
  } finally {
    if (!finished) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}
