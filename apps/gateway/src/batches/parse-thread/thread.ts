import { readlinkSync } from 'node:fs';
import os from 'node:os';
import { parentPort } from 'node:worker_threads';
import { ChunkBuilder, type BuiltChunk } from '../chunk-builder.js';
import { LineSplitter, type RawItem } from '../ndjson-lines.js';
import type { FromThread, ToThread } from './protocol.js';

/**
 * The parse thread: splits each upload's pieces into lines and builds its
 * chunks (the gateway's most CPU-hungry work: reading every number of every
 * line), off the event loop that serves HTTP.
 */
const port = parentPort!;

/**
 * This thread's scheduling priority, below the event loop's: an upload is
 * background work, and on a busy machine the kernel should run a waiting
 * interactive request's turn before the next piece of parsing, not share
 * the cores evenly with it. Nice values order the threads of one CPU
 * cgroup: the gateway's own always, and Redis and the worker where they
 * share it (processes of one session or service; not separate containers).
 * When nothing else wants a core, the thread runs as fast as before. The
 * value is nice 10, or the process's own where that is lower already (a
 * gateway started under `nice 15`): never above the event loop. Linux
 * names a thread by its id in setpriority, read from /proc/thread-self
 * (only when that /proc is this process's: `<pid>/task/<tid>`); elsewhere,
 * or where it is refused, the thread keeps the process's priority.
 */
function lowerOwnPriority(): void {
  try {
    const [pid, task, id] = readlinkSync('/proc/thread-self').split('/');
    const tid = Number(id);
    if (pid !== String(process.pid) || task !== 'task' || !Number.isInteger(tid) || tid <= 0 || tid === process.pid) return;
    os.setPriority(tid, Math.max(os.getPriority(tid), os.constants.priority.PRIORITY_BELOW_NORMAL));
  } catch {
    /* not Linux, or not allowed: the process's priority */
  }
}
lowerOwnPriority();

const sessions = new Map<number, { splitter: LineSplitter; builder: ChunkBuilder }>();

function send(message: FromThread, transfer: ArrayBuffer[] = []): void {
  port.postMessage(message, transfer);
}

function ship(id: number, chunk: BuiltChunk): void {
  const { packed } = chunk;
  // Hand the bytes over without a copy when they own their ArrayBuffer; a
  // small Buffer can sit in Node's shared pool, which must not be transferred.
  const own = packed.byteOffset === 0 && packed.buffer.byteLength === packed.byteLength;
  const bytes = own ? packed : Uint8Array.prototype.slice.call(packed);
  send({ type: 'chunk', id, chunk: { ...chunk, packed: bytes } }, [bytes.buffer as ArrayBuffer]);
}

function add(id: number, builder: ChunkBuilder, items: RawItem[]): void {
  for (const item of items) {
    builder.add(item);
    if (builder.full) ship(id, builder.take());
  }
}

port.on('message', (m: ToThread) => {
  try {
    switch (m.type) {
      case 'open':
        sessions.set(m.id, { splitter: new LineSplitter(m.maxLineBytes), builder: new ChunkBuilder(m.model, m.limits) });
        return;
      case 'data': {
        const s = sessions.get(m.id);
        if (s) add(m.id, s.builder, s.splitter.push(Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength)));
        send({ type: 'consumed', id: m.id });
        return;
      }
      case 'end': {
        const s = sessions.get(m.id);
        if (s) {
          add(m.id, s.builder, s.splitter.end());
          if (s.builder.size > 0) ship(m.id, s.builder.take());
          sessions.delete(m.id);
        }
        send({ type: 'ended', id: m.id });
        return;
      }
      case 'close':
        sessions.delete(m.id);
        return;
    }
  } catch (err) {
    // A bug, not bad input (bad lines become failed items): end this upload, keep the thread.
    sessions.delete(m.id);
    send({ type: 'error', id: m.id, message: (err as Error).message });
  }
});
