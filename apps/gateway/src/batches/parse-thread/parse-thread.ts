import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { build } from 'esbuild';
import { unavailable } from '@infer/errors';
import type { Logger } from '@infer/logger';
import type { BatchModel, BuiltChunk, ChunkLimits } from '../chunk-builder.js';
import { MAX_YIELD_MS, type ChunkSource } from '../chunk-sources.js';
import type { InteractiveRequests } from '../interactive-requests.js';
import type { FromThread, ToThread, WireChunk } from './protocol.js';

/** Body pieces handed to the thread and not yet split: enough to keep it busy, few enough to bound memory. */
const MAX_PIECES_IN_FLIGHT = 4;
/** Built chunks waiting for the batch service (which writes one at a time to Redis). */
const MAX_CHUNKS_WAITING = 2;

/**
 * The thread's own V8 heap: its objects live for one line (the chunk bytes
 * are outside the heap), so a small young generation does; V8's defaults
 * would add tens of MB to the gateway's resident memory.
 *
 * The old generation must hold whatever JSON.parse makes of the longest
 * line allowed, whatever the client put in it: measured on Node 20, a line
 * of nested empty arrays (`[[[[…]]]]`) costs 29 bytes of heap per byte of
 * text, of empty objects 22, of numbers 5 to 7. A line that does not fit
 * would kill the thread (every upload in it answered 503) or, when V8 runs
 * out in the wrong place, the whole gateway. So the limit is sized from
 * the per-line limit: a bound, not a reservation (an ordinary line uses a
 * few MB).
 */
export function threadHeapLimits(maxLineBytes: number): { maxYoungGenerationSizeMb: number; maxOldGenerationSizeMb: number } {
  const perLineMb = Math.ceil((PARSE_HEAP_PER_BYTE * maxLineBytes) / (1024 * 1024));
  return { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: Math.max(128, 64 + perLineMb) };
}

/** Heap bytes per byte of a line's text JSON.parse may take, with a margin over the measured worst (29). */
const PARSE_HEAP_PER_BYTE = 32;

export interface ParseThreadOptions {
  /** The longest line an upload may have (MAX_BODY_BYTES): sizes the thread's heap. @default 10 MiB */
  maxLineBytes?: number;
}

/**
 * The gateway's parse thread, for NDJSON uploads. Splitting lines and
 * reading every number of every line is most of the CPU an upload costs;
 * on a thread of its own it runs beside the event loop, which keeps
 * answering requests (interactive jobs first of all) and writing chunks to
 * Redis meanwhile. One thread serves every upload of this gateway; it starts
 * with the first upload and is replaced if it ever dies.
 *
 * Flow control both ways: the event loop reads the next piece of the body
 * only while fewer than MAX_PIECES_IN_FLIGHT are with the thread and fewer
 * than MAX_CHUNKS_WAITING built chunks wait to be written, so a slow Redis
 * or a busy thread pushes back on the client through TCP, as the in-process
 * path does.
 */
export class ParseThread {
  private worker: Worker | undefined;
  private code: Promise<string> | undefined;
  private readonly sessions = new Map<number, Session>();
  private nextId = 1;

  private readonly heapLimits: ReturnType<typeof threadHeapLimits>;

  constructor(
    private readonly logger: Logger,
    options: ParseThreadOptions = {},
  ) {
    this.heapLimits = threadHeapLimits(options.maxLineBytes ?? 10 * 1024 * 1024);
  }

  chunks(model: BatchModel, limits: ChunkLimits, maxLineBytes: number, body: AsyncIterable<Buffer>, interactive?: InteractiveRequests): ChunkSource {
    return this.run(model, limits, maxLineBytes, body, interactive);
  }

  /** Stop the thread; uploads still running fail. */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (worker) await worker.terminate();
  }

  private async *run(model: BatchModel, limits: ChunkLimits, maxLineBytes: number, body: AsyncIterable<Buffer>, interactive?: InteractiveRequests): AsyncGenerator<BuiltChunk> {
    const worker = await this.thread();
    const id = this.nextId++;
    const session = new Session();
    this.sessions.set(id, session);
    const post = (message: ToThread, transfer: ArrayBuffer[] = []) => worker.postMessage(message, transfer);
    post({ type: 'open', id, model: { name: model.name, inputs: model.inputs, outputs: model.outputs, ...(model.sharedDims ? { sharedDims: model.sharedDims } : {}) }, limits, maxLineBytes });

    let stopped = false;
    const pump = (async () => {
      for await (const piece of body) {
        if (interactive?.busy) await interactive.whenIdle(MAX_YIELD_MS);
        while (!stopped && !session.error && (session.inFlight >= MAX_PIECES_IN_FLIGHT || session.chunks.length >= MAX_CHUNKS_WAITING)) {
          await session.changed();
        }
        if (stopped || session.error) return;
        // A copy with a buffer of its own, handed over without another.
        const bytes = new Uint8Array(piece);
        session.inFlight++;
        post({ type: 'data', id, bytes }, [bytes.buffer]);
      }
      if (!stopped) post({ type: 'end', id });
    })().catch((err: unknown) => session.fail(err instanceof Error ? err : new Error(String(err))));

    try {
      for (;;) {
        const chunk = session.chunks.shift();
        if (chunk) {
          session.notify(); // room for the pump
          yield chunk;
          continue;
        }
        if (session.error) throw session.error;
        if (session.ended) break;
        await session.changed();
      }
      await pump;
    } finally {
      stopped = true;
      session.notify();
      this.sessions.delete(id);
      if (this.worker === worker) post({ type: 'close', id });
    }
  }

  private async thread(): Promise<Worker> {
    if (this.worker) return this.worker;
    this.code ??= bundleThread();
    const code = await this.code;
    if (this.worker) return this.worker;
    const worker = new Worker(code, { eval: true, resourceLimits: this.heapLimits });
    // An idle thread does not keep the process alive; an upload in progress holds it by its socket.
    worker.unref();
    worker.on('message', (m: FromThread) => this.sessions.get(m.id)?.receive(m));
    worker.on('error', (err) => {
      this.logger.error({ err }, 'the batch parse thread failed');
      this.lost(worker, unavailable('The gateway could not read the upload (its parse thread failed); send it again', 1, err));
    });
    worker.on('exit', (code) => this.lost(worker, unavailable(`The gateway could not read the upload (its parse thread exited, code ${code}); send it again`)));
    this.worker = worker;
    return worker;
  }

  /** The thread is gone: its uploads fail (503, discarded: the client sends again); the next upload starts a new one. */
  private lost(worker: Worker, err: Error): void {
    if (this.worker === worker) this.worker = undefined;
    for (const session of this.sessions.values()) session.fail(err);
  }
}

/** One upload's state on the event loop's side. */
class Session {
  readonly chunks: BuiltChunk[] = [];
  inFlight = 0;
  ended = false;
  error: Error | undefined;
  private waiters: (() => void)[] = [];

  receive(m: FromThread): void {
    switch (m.type) {
      case 'chunk':
        this.chunks.push(fromWire(m.chunk));
        break;
      case 'consumed':
        this.inFlight--;
        break;
      case 'ended':
        this.ended = true;
        break;
      case 'error':
        this.error ??= new Error(`batch parse thread: ${m.message}`);
        break;
    }
    this.notify();
  }

  fail(err: Error): void {
    this.error ??= err;
    this.notify();
  }

  /** Resolves at the next change (a message, a failure, room for the pump). */
  changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/**
 * The thread's code as one plain script. The gateway runs from TypeScript
 * through tsx's loader, which a worker thread would have to start again (a
 * loader thread and a compiler of its own: tens of MB); bundled once with
 * esbuild, the thread runs plain JavaScript and costs a small V8 heap.
 */
async function bundleThread(): Promise<string> {
  const result = await build({
    entryPoints: [fileURLToPath(new URL('./thread.ts', import.meta.url))],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    write: false,
    logLevel: 'silent',
  });
  return result.outputFiles[0]!.text;
}

function fromWire(chunk: WireChunk): BuiltChunk {
  const { packed } = chunk;
  return { ...chunk, packed: Buffer.from(packed.buffer, packed.byteOffset, packed.byteLength) };
}
