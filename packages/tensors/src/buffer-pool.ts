/**
 * Byte buffers for the large, short-lived copies a request's tensors pass
 * through (a body put together from its chunks, a base64 value decoded, an
 * envelope's packed inputs), handed back and used again.
 *
 * Why not let the garbage collector have them: V8 counts every new
 * ArrayBuffer's bytes as external memory, and each 64 MB of it starts a
 * full mark-compact of the whole heap, however little of it is still
 * alive. At a few hundred 110 KB images a second, that was several full
 * collections a second in the gateway, a fifth of its CPU. A buffer used
 * again counts once.
 *
 * A buffer is handed back (`release`) only where its owner knows nothing
 * reads it any more; one that is never handed back is simply collected, so
 * an error path that forgets loses nothing but the reuse. Small sizes are
 * not pooled (Node's own pool serves them well), and at most `maxHeldBytes`
 * wait here unused.
 */
export interface BufferPoolOptions {
  /** Sizes under this are plain allocations, never held. @default 16 KiB */
  minBytes?: number;
  /** The most bytes kept for reuse; buffers handed back past it are left to the collector. @default 32 MiB */
  maxHeldBytes?: number;
}

export class BufferPool {
  private readonly minBytes: number;
  private readonly maxHeldBytes: number;
  /** Unused buffers by capacity. */
  private readonly free = new Map<number, ArrayBuffer[]>();
  /** Buffers of this pool now handed out: only these may come back, and each only once. */
  private readonly out = new WeakSet<ArrayBuffer>();
  private held = 0;

  constructor(options: BufferPoolOptions = {}) {
    this.minBytes = options.minBytes ?? 16 * 1024;
    this.maxHeldBytes = options.maxHeldBytes ?? 32 * 1024 * 1024;
  }

  /**
   * `bytes` bytes, their content undefined, aligned for any typed array: at
   * offset 0 of a buffer of their own, or under `minBytes` a slice of
   * Node's pool (Buffer.allocUnsafe, 8-byte aligned).
   */
  acquire(bytes: number): Buffer {
    if (bytes < this.minBytes) return Buffer.allocUnsafe(bytes);
    const capacity = capacityFor(bytes);
    let buffer = this.free.get(capacity)?.pop();
    if (buffer) this.held -= capacity;
    else buffer = new ArrayBuffer(capacity);
    this.out.add(buffer);
    return Buffer.from(buffer, 0, bytes);
  }

  /**
   * Take back the buffer under `view`, which nothing may read or write from
   * now on. A view on memory this pool did not hand out (or has taken back
   * already) is ignored.
   */
  release(view: ArrayBufferView): void {
    const buffer = view.buffer;
    if (!(buffer instanceof ArrayBuffer) || !this.out.has(buffer)) return;
    this.out.delete(buffer);
    if (this.held + buffer.byteLength > this.maxHeldBytes) return;
    let list = this.free.get(buffer.byteLength);
    if (!list) this.free.set(buffer.byteLength, (list = []));
    list.push(buffer);
    this.held += buffer.byteLength;
  }

  /** Bytes waiting unused (for tests and metrics). */
  get heldBytes(): number {
    return this.held;
  }
}

/**
 * The capacity a size is rounded up to: eight steps per power of two, so
 * at most an eighth is wasted and requests of one model's size (the same
 * every time) share a capacity.
 */
function capacityFor(bytes: number): number {
  const step = 2 ** Math.max(0, Math.floor(Math.log2(bytes)) - 3);
  return Math.ceil(bytes / step) * step;
}

/**
 * The process's pool for request tensors: the gateway's bodies, decoded
 * base64 values and packed envelope inputs.
 */
export const tensorBuffers = new BufferPool();
